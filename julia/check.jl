# Verify a Julia installation of NesterovNODEJulia (no Python needed), from the repository
# root (Pkg.test runs it in a sandbox with the test target: Random, SpecialFunctions, Test):
#     julia --project=julia -e 'using Pkg; Pkg.instantiate(); Pkg.test()'
# Checks: the Bessel closed form of the Nesterov ODE (MATH.md); every named adjoint with
# every vector-Jacobian product against finite differences; Van der Pol at μ = 1000 (Tsit5
# vs Rodas5P); algorithm specs that would run code are refused before anything is called;
# QuadratureAdjoint's tolerances, the time a failed solve reached, the retcode of a failed
# backward solve, call-back mode's ZygoteVJP-only rule. The GPU checks are check_gpu.jl.
# Pkg.test fails when a check fails.

using NesterovNODEJulia
using NesterovNODEJulia: nesterov_k, RetcodeLogger
using Logging: Logging
using Random: MersenneTwister
using SpecialFunctions: besselj, gamma
using Test: @test

const FAILURES = String[]

function check(name, ok::Bool, detail)
    println(ok ? "ok    " : "FAIL  ", name, ": ", detail)
    ok || push!(FAILURES, name)
    return ok
end

# -- Bessel: h'' + (r/t) h' + h = 0, h(0) = 1, h'(0) = 0 -----------------------------------
function bessel_error(r; alg="Vern7", tol=1e-11)
    nu = (r - 1) / 2
    h(t) = gamma(nu + 1) * (2 / t)^nu * besselj(nu, t)
    hdot(t) = -gamma(nu + 1) * 2^nu * t^(-nu) * besselj(nu + 1, t)
    k(t) = nesterov_k(t, r)
    kdot(t) = k(t) * (0.5 - r / (2t))
    # the exact f̃(h, t) = (1/4 - r(r-2)/(4t²)) x + h / k(t), with x' = m, m' = -m - f̃
    rhs(u, p, t) = [u[2], -u[2] - ((0.25 - r * (r - 2) / (4t^2)) * u[1] + k(t) * u[1] / k(t))]
    t0 = 1.0
    x0 = h(t0) / k(t0)
    m0 = (hdot(t0) * k(t0) - h(t0) * kdot(t0)) / k(t0)^2
    ts = collect(range(1.0, 10.0; length=10))
    out = solve_forward(rhs, [x0, m0], Float64[], ts; alg, reltol=tol, abstol=tol)
    return maximum(abs(k(t) * out.u[1, j] - h(t)) for (j, t) in enumerate(ts))
end

for r in (3.0, 5.0, 10.0)
    err = bessel_error(r)
    check("Bessel closed form, r = $r", err < 1e-8, "max |k x - h| = $err")
end

include(joinpath(@__DIR__, "test", "layouts.jl"))  # small_layout()

# Central differences of 4th order: truncation ~ FD_STEP^4, the solves' error (at FD_TOL)
# amplified by 1/FD_STEP; both far below FD_PASS (tests/solve/julia/test_julia_sources.py checks it).
const FD_STEP = 1e-3
const FD_TOL = 1e-12
const FD_PASS = 1e-5

function fd(f, x, i)
    e = zeros(length(x)); e[i] = FD_STEP
    return (-f(x .+ 2e) + 8f(x .+ e) - 8f(x .- e) + f(x .- 2e)) / (12FD_STEP)
end

const ADJOINTS = ("GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "BacksolveAdjoint")
const VJPS = ("ZygoteVJP", "EnzymeVJP", "ReverseDiffVJP")

let L = small_layout(), rng = MersenneTwister(0)
    θ = 0.5 .* randn(rng, L.ntheta)
    u0 = 0.3 .* randn(rng, 2 * 2 * 3)   # B = 3 samples of [x, m] with 2 features
    ts = [1.0, 1.5, 2.0]
    W = randn(rng, length(u0), length(ts))
    loss(u0_, θ_) = sum(W .* solve_forward(FieldFn(L), u0_, θ_, ts; alg="Vern9", reltol=FD_TOL, abstol=FD_TOL).u)
    for name in ADJOINTS, vjp in VJPS
        res = solve_with_pullback(FieldFn(L), u0, θ, ts; alg="Vern9", reltol=FD_TOL, abstol=FD_TOL,
                                  sensealg=name, autojacvec=vjp)
        back = res.pullback(W)
        worst = 0.0
        for (x, grad, f) in ((u0, back.du0, x -> loss(x, θ)), (θ, back.dtheta, x -> loss(u0, x)))
            for i in eachindex(x)
                g = fd(f, x, i)
                worst = max(worst, abs(grad[i] - g) / max(1.0, abs(g)))
            end
        end
        check("$name with $vjp vs finite differences", worst < FD_PASS && back.success,
              "worst relative error $worst, backward retcode $(back.retcode), calls $(back.calls)")
    end
end

# -- Van der Pol, μ = 1000: a stiff problem ---------------------------------------------------
let mu = 1000.0
    vdp(u, p, t) = [u[2], mu * ((1 - u[1]^2) * u[2]) - u[1]]
    steps = Dict{String,Int}()
    for alg in ("Tsit5", "Rodas5P")
        out = solve_forward(vdp, [2.0, 0.0], Float64[], [0.0, 100.0]; alg, reltol=1e-6, abstol=1e-6, maxiters=10^7)
        steps[alg] = out.stats["naccept"]
        check("Van der Pol μ = 1000 with $alg", out.success, "retcode $(out.retcode), stats $(out.stats)")
    end
    check("Rodas5P needs far fewer steps than Tsit5 at μ = 1000", 10 * steps["Rodas5P"] < steps["Tsit5"],
          "Tsit5 $(steps["Tsit5"]) accepted steps, Rodas5P $(steps["Rodas5P"])")
end

# -- algorithm specs: constructors and literals only -------------------------------------------
let dir = mktempdir(), marker = joinpath(dir, "marker")
    keep = joinpath(dir, "keep"); mkdir(keep)
    specs = ["exit(3)", "touch($(repr(marker)))", "rm($(repr(keep)), recursive=true)", "run(`true`)",
             "include($(repr(marker)))", "Char(47)", "string(1)", "Tsit5(Char(47))", "Tsit5(); exit(3)",
             "Base.exit(3)", "Core.eval(Main, 1)", "Tsit5(autodiff=touch($(repr(marker))))", "AutoFiniteDiff()",
             "IController()", "Tsit5()()", "Tsit5(1 + 2)", "ODEProblem()", "solve()"]
    for spec in specs
        refused = try
            algorithm(spec)
            false
        catch err
            err isa ArgumentError
        end
        check("the spec $(repr(spec)) is refused", refused && !ispath(marker) && isdir(keep), "")
    end
    for spec in ("Tsit5", "KenCarp4(autodiff=AutoFiniteDiff())", "AutoTsit5(Rosenbrock23())", "Rodas5P(autodiff=false)")
        built = try
            algorithm(spec)
        catch err
            err
        end
        check("the spec $(repr(spec)) builds an algorithm", !(built isa Exception), "$(typeof(built))")
    end
    io = IOBuffer()
    Logging.with_logger(Logging.SimpleLogger(io, Logging.Warn)) do
        algorithm("Rodas5P"; finite_diff=true)
        algorithm("KenCarp4"; finite_diff=true)
    end
    warnings = String(take!(io))
    check("finite differencing by AutoFiniteDiff warns of no deprecation", isempty(warnings), warnings)
end

# -- tolerances, failures, call-back rule -----------------------------------------------------
let L = small_layout(), θ = fill(0.1, 27), u0 = fill(0.2, 12), ts = [1.0, 2.0]
    q = sensealg("QuadratureAdjoint"; reltol=1e-9, abstol=1e-10)
    check("QuadratureAdjoint takes the solve's tolerances", q.reltol == 1e-9 && q.abstol == 1e-10, "$(q.reltol), $(q.abstol)")
    res = solve_with_pullback(FieldFn(L), u0, θ, ts; alg="Tsit5", maxiters=3, sensealg="GaussAdjoint")
    check("a solve stopped by maxiters says so and where", !res.success && res.retcode == "MaxIters" && 1.0 < res.t_reached < 2.0,
          "retcode $(res.retcode), t_reached $(res.t_reached)")
    logger = RetcodeLogger(Logging.SimpleLogger(IOBuffer()), String[])
    Logging.with_logger(logger) do
        @warn "Interrupted. Larger maxiters is needed. If you are using an integrator for non-stiff ODEs or an automatic switching algorithm (the default), you may want to consider using a method for stiff equations."
    end
    check("a backward solve's MaxIters warning is read as its retcode", logger.retcodes == ["MaxIters"], "$(logger.retcodes)")
    py = PyRHS((du, u, t) -> (du .= -u), nothing, 0)
    refused = try
        solve_with_pullback(py, u0, Float64[], ts; autojacvec="EnzymeVJP")
        false
    catch err
        err isa ArgumentError
    end
    check("a field evaluated by Python is differentiated only with ZygoteVJP", refused, "")
end

if isempty(FAILURES)
    println("all checks passed")
else
    println("failed: ", join(FAILURES, "; "))
end
@test isempty(FAILURES)
