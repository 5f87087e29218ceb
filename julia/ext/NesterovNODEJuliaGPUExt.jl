"""
    NesterovNODEJuliaGPUExt

Loaded with CUDA.jl and DLPack.jl (weak dependencies: CPU users never install them): tensors
cross between torch and Julia through DLPack without a copy, as `CuArray`s on the GPU
(DLPack's own PythonCall extension reads the Python objects). A row-major torch tensor
arrives with its dimensions reversed; the engine hands over flat vectors, which are the
same in both orders.
"""
module NesterovNODEJuliaGPUExt

using CUDA: CUDA
using DLPack: DLPack
using NesterovNODEJulia: NesterovNODEJulia

NesterovNODEJulia.wrap_dlpack(tensor) = DLPack.from_dlpack(tensor)

NesterovNODEJulia.time_row(H::CUDA.CuArray, t) = CUDA.fill(t, 1, size(H, 2))

NesterovNODEJulia.share_dlpack(A::AbstractArray, from_dlpack) = DLPack.share(A, from_dlpack)

end # module
