"""
    NesterovNODEJulia

The seven momentum-ODE models of nesterovnode (NODE, ANODE, SONODE, HBNODE, GHBNODE,
NesterovNODE, GNesterovNODE) as Julia vector fields on ONE flat parameter vector θ laid
out exactly as torch's `parameters()` of the same dynamics module, described by the layout
that Python exports (`nesterovnode.solve.engines.julia_layout.dynamics_layout`); forward
solves by an OrdinaryDiffEq algorithm spec (parsed, never evaluated); gradients by a named
SciMLSensitivity adjoint.

States are flat vectors in torch's row-major order: a first-order state `[B, n]` is the
Julia matrix `reshape(u, n, B)` (one column per sample), a second-order state `[B, 2, n]`
is `reshape(u, n, 2, B)` (`[:, 1, :]` position, `[:, 2, :]` velocity). They are host
`Array`s, or GPU arrays shared by torch through DLPack when CUDA.jl and DLPack.jl are
loaded (the extension `NesterovNODEJuliaGPUExt`, see `wrap_dlpack`).
"""
module NesterovNODEJulia

using ADTypes: ADTypes
using ChainRulesCore: ChainRulesCore, NoTangent
using JSON: JSON
using LinearAlgebra: transpose
using Logging: Logging
using OrdinaryDiffEq: OrdinaryDiffEq, solve
using SciMLBase: SciMLBase, ODEProblem, remake
using SciMLSensitivity: SciMLSensitivity, BacksolveAdjoint, EnzymeVJP, GaussAdjoint,
                        InterpolatingAdjoint, QuadratureAdjoint, ReverseDiffVJP, ZygoteVJP
using Zygote: Zygote

include("layout.jl")
include("fields.jl")
include("algorithms.jl")
include("solve.jl")

"""
    wrap_dlpack(tensor)

The Julia array sharing the memory of a Python tensor (a DLPack producer such as a torch
tensor): a `CuArray` for a CUDA tensor. Defined by the extension `NesterovNODEJuliaGPUExt`
(loaded with CUDA.jl and DLPack.jl); `gpu_arrays()` says whether it is.
"""
function wrap_dlpack end

"""
    share_dlpack(A, from_dlpack)

`A` handed to Python without a copy: `from_dlpack` is the consumer (`torch.from_dlpack`).
Defined by the extension `NesterovNODEJuliaGPUExt`.
"""
function share_dlpack end

"""Whether the GPU extension (CUDA.jl and DLPack.jl) is loaded."""
gpu_arrays() = Base.get_extension(@__MODULE__, :NesterovNODEJuliaGPUExt) !== nothing

export Layout, parse_layout, field, FieldFn, PyRHS, calls, algorithm, sensealg
export solve_forward, solve_with_pullback, wrap_dlpack, share_dlpack, gpu_arrays

end # module
