# Forward solves and gradients, returning states, stats and retcodes as plain values.

"""`sol.stats` as a Dict (nf, nw, nsolve, njacs, nnonliniter, nnonlinconvfail, naccept,
nreject… whatever this OrdinaryDiffEq version records)."""
function stats_dict(sol)
    s = sol.stats
    s === nothing && return Dict{String,Int}()
    return Dict{String,Int}(string(k) => Int(getfield(s, k)) for k in fieldnames(typeof(s)) if getfield(s, k) isa Integer)
end

retcode_name(sol) = string(Symbol(sol.retcode))

function _kwargs(ts, reltol, abstol, dt, maxiters)
    kw = Dict{Symbol,Any}(:reltol => reltol, :abstol => abstol)
    maxiters === nothing || (kw[:maxiters] = Int(maxiters))
    if dt !== nothing
        kw[:adaptive] = false
        kw[:dt] = Float64(dt)
    end
    return kw
end

"""
    solve_forward(rhs, u0, θ, ts; alg="Tsit5", reltol=1e-6, abstol=1e-6, dt=nothing,
                  maxiters=nothing, finite_diff=false)

Solve `u' = rhs(u, θ, t)` (a `FieldFn` or a `PyRHS`) from `u0` at `ts[1]`; steps land on
every output time (`tstops = ts`) and every step is kept, so the result carries the step
history. Returns a NamedTuple: `u` (n × length(ts), NaN where not reached), `t` (the step
ends), `retcode`, `stats` (`sol.stats` as a Dict), `alg_choice` (for auto-switching
algorithms, the method index of each step; empty otherwise).
"""
function solve_forward(rhs, u0::AbstractVector, θ::AbstractVector, ts::AbstractVector;
                       alg="Tsit5", reltol=1e-6, abstol=1e-6, dt=nothing, maxiters=nothing,
                       finite_diff::Bool=false)
    times = collect(Float64, ts)
    a = alg isa AbstractString ? algorithm(alg; finite_diff) : alg
    prob = ODEProblem{false}(rhs, collect(Float64, u0), (times[1], times[end]), collect(Float64, θ))
    sol = solve(prob, a; tstops=times, save_everystep=true, dense=false, _kwargs(times, reltol, abstol, dt, maxiters)...)
    out = fill(NaN, length(u0), length(times))
    j = 1
    for (i, t) in enumerate(sol.t)
        while j <= length(times) && (times[end] > times[1] ? times[j] < t : times[j] > t)
            j += 1
        end
        if j <= length(times) && sol.t[i] == times[j]
            out[:, j] = sol.u[i]
        end
    end
    choice = hasproperty(sol, :alg_choice) && sol.alg_choice !== nothing ? collect(Int, sol.alg_choice) : Int[]
    return (u=out, t=collect(Float64, sol.t), retcode=retcode_name(sol), stats=stats_dict(sol), alg_choice=choice)
end

"""
    solve_with_pullback(rhs, u0, θ, ts; alg, reltol, abstol, dt, maxiters,
                        sensealg="GaussAdjoint", autojacvec="ZygoteVJP", finite_diff=false)

The forward solve saved at `ts` (`saveat`) under the named SciMLSensitivity adjoint, and
its pullback. Returns a NamedTuple: `u` (n × length(ts)), `retcode`, `stats`, and
`pullback(dY) -> (du0, dθ, calls)`, given ∂L/∂Y at the output times (n × length(ts)):
∂L/∂u0, ∂L/∂θ and the right-hand-side evaluations the adjoint made (a `FieldFn`'s count;
0 for a `PyRHS`, which Python counts itself).
"""
function solve_with_pullback(rhs, u0::AbstractVector, θ::AbstractVector, ts::AbstractVector;
                             alg="Tsit5", reltol=1e-6, abstol=1e-6, dt=nothing, maxiters=nothing,
                             sensealg::AbstractString="GaussAdjoint", autojacvec::AbstractString="ZygoteVJP",
                             finite_diff::Bool=false)
    times = collect(Float64, ts)
    a = alg isa AbstractString ? algorithm(alg; finite_diff) : alg
    sa = NesterovNODEJulia.sensealg(sensealg, autojacvec)
    prob = ODEProblem{false}(rhs, collect(Float64, u0), (times[1], times[end]), collect(Float64, θ))
    kw = _kwargs(times, reltol, abstol, dt, maxiters)
    latest = Ref{Any}(nothing)
    function run(u0_, θ_)
        sol = solve(remake(prob; u0=u0_, p=θ_), a; saveat=times, sensealg=sa, kw...)
        ChainRulesCore.ignore_derivatives() do
            latest[] = sol
        end
        return Array(sol)
    end
    Y, back = Zygote.pullback(run, prob.u0, prob.p)
    sol = latest[]
    calls() = rhs isa FieldFn ? rhs.calls[] : 0
    function pullback(dY::AbstractMatrix)
        before = calls()
        du0, dθ = back(collect(Float64, dY))
        du0 = du0 === nothing ? zeros(length(u0)) : collect(Float64, du0)
        dθ = dθ === nothing ? zeros(length(θ)) : collect(Float64, dθ)
        return (du0, dθ, calls() - before)
    end
    return (u=Y, retcode=retcode_name(sol), stats=stats_dict(sol), t_reached=Float64(sol.t[end]), pullback=pullback)
end
