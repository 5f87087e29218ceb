# Verify a Julia installation of NesterovNODEJulia (no Python needed):
#     julia --project=julia julia/check.jl        (from the repository root)
# Checks: the Bessel closed form of the Nesterov ODE (MATH.md), every named adjoint's
# gradients against central finite differences, and Van der Pol at μ = 1000 (Tsit5 vs
# Rodas5P step counts). Exits with status 1 when a check fails.

using NesterovNODEJulia
using NesterovNODEJulia: nesterov_k, stats_dict
using SpecialFunctions: besselj, gamma
using Random: MersenneTwister

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

# -- gradients of a small GNesterovNODE against finite differences ---------------------------
# f = [h, t] -> fc_4 -> ELU -> fc_2, ξ learnable (softplus), σ = Hardtanh(-5, 5), r = 3
function small_layout()
    ops = Any[
        Dict("kind" => "dense", "in" => 3, "out" => 4, "weight" => Dict("offset" => 0, "shape" => [4, 3]),
             "bias" => Dict("offset" => 12, "shape" => [4])),
        Dict("kind" => "elu", "alpha" => 1.0),
        Dict("kind" => "dense", "in" => 4, "out" => 2, "weight" => Dict("offset" => 16, "shape" => [2, 4]),
             "bias" => Dict("offset" => 24, "shape" => [2])),
    ]
    return parse_layout(Dict(
        "format" => "nesterovnode-layout/1", "model" => "gnesterovnode", "r" => 3.0,
        "state" => Dict("features" => 2, "second_order" => true), "theta_length" => 27,
        "network" => Dict("time_input" => "concat", "inputs" => 3, "outputs" => 2, "ops" => ops),
        "xi" => Dict("kind" => "softplus", "offset" => 26),
        "sigma" => Dict("kind" => "hardtanh", "min" => -5.0, "max" => 5.0),
    ))
end

let L = small_layout(), rng = MersenneTwister(0)
    θ = 0.5 .* randn(rng, L.ntheta)
    u0 = 0.3 .* randn(rng, 2 * 2 * 3)   # B = 3 samples of [x, m] with 2 features
    ts = [1.0, 1.5, 2.0]
    W = randn(rng, length(u0), length(ts))
    loss(u0_, θ_) = sum(W .* solve_forward(FieldFn(L), u0_, θ_, ts; alg="Vern7", reltol=1e-12, abstol=1e-12).u)
    for name in ("GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "BacksolveAdjoint")
        res = solve_with_pullback(FieldFn(L), u0, θ, ts; alg="Vern7", reltol=1e-12, abstol=1e-12, sensealg=name)
        du0, dθ, calls = res.pullback(W)
        worst = 0.0
        for (vec, grad, f) in ((u0, du0, x -> loss(x, θ)), (θ, dθ, x -> loss(u0, x)))
            for i in unique([1, 2, length(vec) ÷ 2, length(vec)])
                e = zeros(length(vec)); e[i] = 1e-5
                fd = (f(vec .+ e) - f(vec .- e)) / 2e-5
                worst = max(worst, abs(grad[i] - fd) / max(1.0, abs(fd)))
            end
        end
        check("$name gradients vs finite differences", worst < 1e-6, "worst relative error $worst, backward calls $calls")
    end
end

# -- Van der Pol, μ = 1000: a stiff problem ---------------------------------------------------
let mu = 1000.0
    vdp(u, p, t) = [u[2], mu * ((1 - u[1]^2) * u[2]) - u[1]]
    steps = Dict{String,Int}()
    for alg in ("Tsit5", "Rodas5P")
        out = solve_forward(vdp, [2.0, 0.0], Float64[], [0.0, 100.0]; alg, reltol=1e-6, abstol=1e-6, maxiters=10^7)
        steps[alg] = out.stats["naccept"]
        check("Van der Pol μ = 1000 with $alg", out.retcode == "Success", "retcode $(out.retcode), stats $(out.stats)")
    end
    check("Rodas5P needs far fewer steps than Tsit5 at μ = 1000", 10 * steps["Rodas5P"] < steps["Tsit5"],
          "Tsit5 $(steps["Tsit5"]) accepted steps, Rodas5P $(steps["Rodas5P"])")
end

if isempty(FAILURES)
    println("all checks passed")
else
    println("failed: ", join(FAILURES, "; "))
    exit(1)
end
