"""
    NesterovNODEJulia

The seven momentum-ODE models of nesterovnode (NODE, ANODE, SONODE, HBNODE, GHBNODE,
NesterovNODE, GNesterovNODE) as Julia vector fields on ONE flat parameter vector θ laid
out exactly as torch's `parameters()` of the same dynamics module, described by the layout
that Python exports (`nesterovnode.solve.engines.julia_layout.dynamics_layout`); forward
solves by any OrdinaryDiffEq algorithm name; gradients by a named SciMLSensitivity adjoint.

States are flat vectors in torch's row-major order: a first-order state `[B, n]` is the
Julia matrix `reshape(u, n, B)` (one column per sample), a second-order state `[B, 2, n]`
is `reshape(u, n, 2, B)` (`[:, 1, :]` position, `[:, 2, :]` velocity).
"""
module NesterovNODEJulia

using ChainRulesCore: ChainRulesCore, NoTangent
using JSON: JSON
using LinearAlgebra: transpose
using OrdinaryDiffEq
using SciMLBase: SciMLBase, ODEProblem, remake
using SciMLSensitivity
using Zygote: Zygote

include("layout.jl")
include("fields.jl")
include("algorithms.jl")
include("solve.jl")

export Layout, parse_layout, field, FieldFn, PyRHS, calls, algorithm, sensealg
export solve_forward, solve_with_pullback

end # module
