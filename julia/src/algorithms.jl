# Algorithms and sensitivities by name.

"""
Algorithms that OrdinaryDiffEq exports as functions rather than types: each returns an
auto-switching `SciMLBase.AbstractODEAlgorithm` built from the algorithms it is given.
"""
const SWITCHING = (:AutoTsit5, :AutoVern6, :AutoVern7, :AutoVern8, :AutoVern9, :AutoDP5)

"""
    algorithm(spec; finite_diff=false)

The OrdinaryDiffEq algorithm named by `spec`: a name (`"Tsit5"`, `"Rodas5P"`) or a call of
one with literal arguments (`"AutoTsit5(Rosenbrock23())"`,
`"KenCarp4(autodiff=AutoFiniteDiff())"`). `spec` is parsed, never evaluated: every call in
it must name a type `<: SciMLBase.AbstractODEAlgorithm` that OrdinaryDiffEq exports (or
one of `SWITCHING`), or, nested, a type `<: ADTypes.AbstractADType` that ADTypes exports;
arguments are numbers, `true`, `false`, `nothing`, `:symbols` and such calls. Anything else
(`"exit()"`, `"rm(…)"`, `"Char(47)"`, strings, operators) throws an `ArgumentError`
before anything is called. Python applies the same grammar first
(`nesterovnode.solve.engines.julia_spec`).

With `finite_diff`, every algorithm constructor that takes it gets
`autodiff = ADTypes.AutoFiniteDiff()` (or `false`, where an older OrdinaryDiffEq takes no
ADTypes choice): a right-hand side evaluated by Python cannot carry ForwardDiff's dual
numbers.
"""
function algorithm(spec::AbstractString; finite_diff::Bool=false)
    text = strip(spec)
    expr = try
        Meta.parse(occursin('(', text) ? text : text * "()")
    catch err
        throw(ArgumentError("not an algorithm spec: $(repr(spec)) ($(sprint(showerror, err)))"))
    end
    expr isa Expr && expr.head === :call ||
        throw(ArgumentError("not an algorithm spec: $(repr(spec)); write a call such as Tsit5()"))
    alg = _build(expr, finite_diff)
    alg isa SciMLBase.AbstractODEAlgorithm ||
        throw(ArgumentError("$(repr(spec)) is not an ODE algorithm (it builds a $(typeof(alg)))"))
    return alg
end

_refuse(x) = throw(ArgumentError("$(repr(x)) is not allowed in an algorithm spec: only algorithm and ADTypes constructors with literal arguments"))

_build(x::Union{Bool,Integer,AbstractFloat}, ::Bool) = x
_build(x::QuoteNode, ::Bool) = x.value isa Symbol ? x.value : _refuse(x)
_build(x::Symbol, ::Bool) = x === :nothing ? nothing : _refuse(x)
_build(x, ::Bool) = _refuse(x)

"""The constructor `name` stands for, and whether it builds an algorithm (else an AD
type); an `ArgumentError` for any other name."""
function constructor(name)
    name isa Symbol || _refuse(name)
    if isdefined(OrdinaryDiffEq, name) && Base.isexported(OrdinaryDiffEq, name)
        c = getfield(OrdinaryDiffEq, name)
        c isa Type && c <: SciMLBase.AbstractODEAlgorithm && return c, true
        name in SWITCHING && return c, true
    end
    if isdefined(ADTypes, name) && Base.isexported(ADTypes, name)
        c = getfield(ADTypes, name)
        c isa Type && c <: ADTypes.AbstractADType && return c, false
    end
    throw(ArgumentError("$(name) is neither an ODE algorithm OrdinaryDiffEq exports nor an ADTypes type"))
end

function _build(expr::Expr, finite_diff::Bool)
    expr.head === :call || _refuse(expr)
    ctor, is_algorithm = constructor(expr.args[1])
    positional = Any[]
    keywords = Pair{Symbol,Any}[]
    for arg in expr.args[2:end]
        if arg isa Expr && arg.head === :kw && arg.args[1] isa Symbol
            push!(keywords, arg.args[1] => _build(arg.args[2], finite_diff))
        elseif arg isa Expr && arg.head === :parameters
            for kw in arg.args
                kw isa Expr && kw.head === :kw && kw.args[1] isa Symbol || _refuse(kw)
                push!(keywords, kw.args[1] => _build(kw.args[2], finite_diff))
            end
        else
            push!(positional, _build(arg, finite_diff))
        end
    end
    if is_algorithm && finite_diff && !any(first(k) === :autodiff for k in keywords)
        for ad in (ADTypes.AutoFiniteDiff(), false)
            try
                return ctor(positional...; keywords..., autodiff=ad)
            catch err
                err isa MethodError || err isa ArgumentError || rethrow()
            end
        end
    end
    return ctor(positional...; keywords...)
end

"""
    sensealg(name, autojacvec="ZygoteVJP"; reltol=1e-6, abstol=1e-6)

A SciMLSensitivity adjoint by name (GaussAdjoint, InterpolatingAdjoint, QuadratureAdjoint,
BacksolveAdjoint) with its vector-Jacobian product by name (ZygoteVJP, EnzymeVJP,
ReverseDiffVJP). QuadratureAdjoint integrates dL/dθ at `reltol`/`abstol` (the solve's),
not at its own defaults (1e-3, 1e-6).
"""
function sensealg(name::AbstractString, autojacvec::AbstractString="ZygoteVJP"; reltol=1e-6, abstol=1e-6)
    vjp = if autojacvec == "ZygoteVJP"
        ZygoteVJP()
    elseif autojacvec == "EnzymeVJP"
        EnzymeVJP()
    elseif autojacvec == "ReverseDiffVJP"
        ReverseDiffVJP()
    else
        throw(ArgumentError("unknown autojacvec $(autojacvec); known: EnzymeVJP, ReverseDiffVJP, ZygoteVJP"))
    end
    name == "GaussAdjoint" && return GaussAdjoint(autojacvec=vjp)
    name == "InterpolatingAdjoint" && return InterpolatingAdjoint(autojacvec=vjp)
    name == "QuadratureAdjoint" && return QuadratureAdjoint(autojacvec=vjp, reltol=Float64(reltol), abstol=Float64(abstol))
    name == "BacksolveAdjoint" && return BacksolveAdjoint(autojacvec=vjp)
    throw(ArgumentError("unknown sensealg $(name); known: BacksolveAdjoint, GaussAdjoint, InterpolatingAdjoint, QuadratureAdjoint"))
end
