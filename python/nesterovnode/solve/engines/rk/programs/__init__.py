"""What only runs the rk loop faster: the loop as one tensor program (``solve_loop``), in
chunks for CUDA graphs (``chunks``), the runners (``runners``), TorchInductor compilation
(``compiled``) and argument trees (``nested``). The numbers are the host loop's."""
