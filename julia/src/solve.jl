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

"""A Float64 copy of `x` on its own device: a host vector becomes an `Array`, a GPU
array (a `CuArray` from DLPack) stays a GPU array."""
_own(x::Array) = collect(Float64, x)
_own(x::AbstractArray) = x isa DenseArray ? copy(x) : collect(Float64, x)

"""The states at the output times as one n × length(ts) matrix on the states' device."""
_states(sol, u0::Array) = Array(sol)
_states(sol, u0) = reduce(hcat, sol.u)

"""
    solve_forward(rhs, u0, θ, ts; alg="Tsit5", reltol=1e-6, abstol=1e-6, dt=nothing,
                  maxiters=nothing, finite_diff=false)

Solve `u' = rhs(u, θ, t)` (a `FieldFn` or a `PyRHS`) from `u0` at `ts[1]`; steps land on
every output time (`tstops = ts`) and every step is kept, so the result carries the step
history. Returns a NamedTuple: `u` (n × length(ts), NaN where not reached), `t` (the step
ends), `retcode`, `success` (`SciMLBase.successful_retcode`), `stats` (`sol.stats` as a
Dict), `alg_choice` (for auto-switching algorithms, the method index of each step; empty
otherwise).
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
    return (u=out, t=collect(Float64, sol.t), retcode=retcode_name(sol), success=SciMLBase.successful_retcode(sol),
            stats=stats_dict(sol), alg_choice=choice)
end

"""
The retcode a SciMLBase integrator reported through its log message (the warnings of
`SciMLBase.check_error`), or `nothing` for any other message. SciMLSensitivity does not
return its backward solves, so their failures are read here.
"""
function retcode_of_message(message::AbstractString)
    occursin("maxiters", message) && return "MaxIters"
    occursin("dtmin", message) && return "DtLessThanMin"
    occursin("NaN dt", message) && return "DtNaN"
    (occursin("Instability", message) || occursin("floating point epsilon", message)) && return "Unstable"
    occursin("Newton steps could not converge", message) && return "ConvergenceFailure"
    return nothing
end

"""A logger that records the retcodes of the failed solves it sees (`retcode_of_message`)
and passes every message on to `parent`."""
struct RetcodeLogger <: Logging.AbstractLogger
    parent::Logging.AbstractLogger
    retcodes::Vector{String}
end
Logging.min_enabled_level(l::RetcodeLogger) = min(Logging.Warn, Logging.min_enabled_level(l.parent))
Logging.shouldlog(::RetcodeLogger, args...) = true
Logging.catch_exceptions(l::RetcodeLogger) = Logging.catch_exceptions(l.parent)
function Logging.handle_message(l::RetcodeLogger, level, message, _module, group, id, file, line; kwargs...)
    if level >= Logging.Warn
        code = retcode_of_message(string(message))
        code === nothing || push!(l.retcodes, code)
    end
    if level >= Logging.min_enabled_level(l.parent) && Logging.shouldlog(l.parent, level, _module, group, id)
        Logging.handle_message(l.parent, level, message, _module, group, id, file, line; kwargs...)
    end
    return nothing
end

"""
    solve_with_pullback(rhs, u0, θ, ts; alg, reltol, abstol, dt, maxiters,
                        sensealg="GaussAdjoint", autojacvec="ZygoteVJP", finite_diff=false)

The forward solve saved at `ts` (`saveat`) under the named SciMLSensitivity adjoint, and
its pullback. `u0` and `θ` are flat vectors, host `Array`s or GPU arrays (which the solve
keeps on their device). Returns a NamedTuple: `u` (n × length(ts)), `u_flat` (`vec(u)`:
the states row-major as `[length(ts), n]`), `retcode`, `success`
(`SciMLBase.successful_retcode`), `t_reached` (the last time the solve reached: the end,
or where it failed), `stats`, and `pullback(dY)`, given ∂L/∂Y at the output times
(n × length(ts), or that matrix flattened), returning a NamedTuple: `du0`, `dtheta`,
`calls` (the right-hand-side evaluations the adjoint made: a `FieldFn`'s count; 0 for a
`PyRHS`, which Python counts itself), `retcode` and `success` of the backward solve.

A `PyRHS` is differentiated only through its ChainRules rule, which only `ZygoteVJP` reads:
any other `autojacvec` throws an `ArgumentError`.
"""
function solve_with_pullback(rhs, u0::AbstractVector, θ::AbstractVector, ts::AbstractVector;
                             alg="Tsit5", reltol=1e-6, abstol=1e-6, dt=nothing, maxiters=nothing,
                             sensealg::AbstractString="GaussAdjoint", autojacvec::AbstractString="ZygoteVJP",
                             finite_diff::Bool=false)
    if rhs isa PyRHS && autojacvec != "ZygoteVJP"
        throw(ArgumentError("autojacvec=$(autojacvec) cannot differentiate a field evaluated by Python (PyRHS): its vector-Jacobian products reach SciMLSensitivity through a ChainRules rule that only ZygoteVJP reads; use ZygoteVJP"))
    end
    times = collect(Float64, ts)
    a = alg isa AbstractString ? algorithm(alg; finite_diff) : alg
    sa = NesterovNODEJulia.sensealg(sensealg, autojacvec; reltol, abstol)
    prob = ODEProblem{false}(rhs, _own(u0), (times[1], times[end]), _own(θ))
    kw = _kwargs(times, reltol, abstol, dt, maxiters)
    latest = Ref{Any}(nothing)
    function run(u0_, θ_)
        sol = solve(remake(prob; u0=u0_, p=θ_), a; saveat=times, sensealg=sa, kw...)
        ChainRulesCore.ignore_derivatives() do
            latest[] = sol
        end
        return _states(sol, u0_)
    end
    Y, back = try
        Zygote.pullback(run, prob.u0, prob.p)
    catch
        # a forward solve that stops early makes the adjoints interpolate past its end,
        # which throws: report the failure itself, found by the same solve without them
        plain = solve(prob, a; save_everystep=false, save_start=false, kw...)
        SciMLBase.successful_retcode(plain) && rethrow()
        return (u=nothing, u_flat=nothing, retcode=retcode_name(plain), success=false,
                t_reached=Float64(plain.t[end]), stats=stats_dict(plain), pullback=nothing)
    end
    sol = latest[]
    success = SciMLBase.successful_retcode(sol)
    # the adjoints replace sol.t by the requested times: where the solve stopped early,
    # the same solve without a sensitivity says where
    t_reached = success ? times[end] : _time_reached(prob, a, kw)
    calls() = rhs isa FieldFn ? rhs.calls[] : 0
    function pullback(dY::AbstractArray)
        before = calls()
        logger = RetcodeLogger(Logging.current_logger(), String[])
        du0, dθ = Logging.with_logger(logger) do
            back(reshape(_own(vec(dY)), size(Y)))
        end
        du0 = du0 === nothing ? zero(prob.u0) : _own(du0)
        dθ = dθ === nothing ? zero(prob.p) : _own(dθ)
        retcode = isempty(logger.retcodes) ? "Success" : first(logger.retcodes)
        return (du0=du0, dtheta=dθ, calls=calls() - before, retcode=retcode, success=isempty(logger.retcodes))
    end
    return (u=Y, u_flat=vec(Y), retcode=retcode_name(sol), success=success, t_reached=t_reached,
            stats=stats_dict(sol), pullback=pullback)
end

"""The last time a plain solve of `prob` by `a` reaches (its end, or where it fails)."""
function _time_reached(prob, a, kw)
    sol = solve(prob, a; save_everystep=false, save_start=false, kw...)
    return Float64(sol.t[end])
end
