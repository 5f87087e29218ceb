# The fields and adjoints on CuArrays, in an environment that has NesterovNODEJulia with
# CUDA.jl and DLPack.jl (the one juliapkg manages, after
# `nesterovnode.solve.engines.julia.enable_gpu()`; tests/solve/julia/test_julia_engine.py, marked julia
# and gpu, includes this file through juliacall). Throws when a check fails.

using NesterovNODEJulia
using CUDA: CUDA, CuArray
using DLPack: DLPack
using Random: MersenneTwister

include(joinpath(@__DIR__, "test", "layouts.jl"))

function check_gpu()
    CUDA.functional() || error("CUDA.jl is not functional here")
    gpu_arrays() || error("NesterovNODEJuliaGPUExt is not loaded with CUDA.jl and DLPack.jl")
    L = small_layout()
    rng = MersenneTwister(1)
    θ = 0.5 .* randn(rng, L.ntheta)
    u0 = 0.3 .* randn(rng, 12)
    ts = [1.0, 1.5, 2.0]
    W = randn(rng, 12, 3)
    gpu_field = Array(field(L, CuArray(u0), CuArray(θ), 1.3))
    maximum(abs.(gpu_field .- field(L, u0, θ, 1.3))) < 1e-12 || error("the field on CuArrays differs")
    cpu = solve_with_pullback(FieldFn(L), u0, θ, ts; alg="Tsit5", reltol=1e-10, abstol=1e-10)
    gpu = solve_with_pullback(FieldFn(L), CuArray(u0), CuArray(θ), ts; alg="Tsit5", reltol=1e-10, abstol=1e-10)
    gpu.success || error("the solve on CuArrays failed: $(gpu.retcode)")
    gpu.u isa CuArray || error("the states of a solve on CuArrays left the GPU")
    cb, gb = cpu.pullback(W), gpu.pullback(CuArray(W))
    gb.du0 isa CuArray && gb.dtheta isa CuArray || error("the gradients left the GPU")
    maximum(abs.(Array(gb.du0) .- cb.du0)) < 1e-8 || error("∂L/∂u0 on the GPU differs")
    maximum(abs.(Array(gb.dtheta) .- cb.dtheta)) < 1e-8 || error("∂L/∂θ on the GPU differs")
    return true
end
