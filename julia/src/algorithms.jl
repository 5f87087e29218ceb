# Algorithms and sensitivities by name.

"""
    algorithm(spec; finite_diff=false)

The OrdinaryDiffEq algorithm named by `spec`: a name (`"Tsit5"`, `"Rodas5P"`) or a
constructor expression (`"AutoTsit5(Rosenbrock23())"`, `"KenCarp4(autodiff=false)"`). Only
constructors OrdinaryDiffEq defines, numbers, booleans and keyword arguments are accepted:
`spec` is never evaluated as arbitrary code. With `finite_diff`, every constructor that
takes it gets `autodiff = AutoFiniteDiff()` (or `false` on older OrdinaryDiffEq): a
right-hand side evaluated by Python cannot carry ForwardDiff's dual numbers.
"""
function algorithm(spec::AbstractString; finite_diff::Bool=false)
    text = strip(spec)
    occursin(r"^[A-Za-z0-9_(),.=\s+\-]+$", text) || throw(ArgumentError("not an algorithm name: $(repr(spec))"))
    expr = Meta.parse(occursin('(', text) ? text : text * "()")
    return _build(expr, finite_diff)
end

function _finite_diff_choices()
    isdefined(OrdinaryDiffEq, :AutoFiniteDiff) && return Any[OrdinaryDiffEq.AutoFiniteDiff(), false]
    return Any[false]
end

_build(x::Union{Number,Bool,AbstractString}, ::Bool) = x

function _build(expr::Expr, finite_diff::Bool)
    expr.head === :call || throw(ArgumentError("not an algorithm expression: $(expr)"))
    name = expr.args[1]
    name isa Symbol && isdefined(OrdinaryDiffEq, name) ||
        throw(ArgumentError("OrdinaryDiffEq has no algorithm $(name)"))
    ctor = getfield(OrdinaryDiffEq, name)
    positional = Any[]
    keywords = Pair{Symbol,Any}[]
    for arg in expr.args[2:end]
        if arg isa Expr && arg.head === :kw
            push!(keywords, arg.args[1] => _build(arg.args[2], finite_diff))
        elseif arg isa Expr && arg.head === :parameters
            for kw in arg.args
                push!(keywords, kw.args[1] => _build(kw.args[2], finite_diff))
            end
        else
            push!(positional, _build(arg, finite_diff))
        end
    end
    if finite_diff && !any(first(k) === :autodiff for k in keywords)
        for ad in _finite_diff_choices()
            try
                return ctor(positional...; keywords..., autodiff=ad)
            catch err
                err isa MethodError || err isa ArgumentError || rethrow()
            end
        end
    end
    return ctor(positional...; keywords...)
end

const SENSEALGS = Dict(
    "GaussAdjoint" => GaussAdjoint,
    "InterpolatingAdjoint" => InterpolatingAdjoint,
    "QuadratureAdjoint" => QuadratureAdjoint,
    "BacksolveAdjoint" => BacksolveAdjoint,
)

const VJPS = Dict(
    "ZygoteVJP" => () -> ZygoteVJP(),
    "EnzymeVJP" => () -> EnzymeVJP(),
    "ReverseDiffVJP" => () -> ReverseDiffVJP(),
)

"""
    sensealg(name, autojacvec="ZygoteVJP")

A SciMLSensitivity adjoint by name (GaussAdjoint, InterpolatingAdjoint, QuadratureAdjoint,
BacksolveAdjoint) with its vector-Jacobian product by name (ZygoteVJP, EnzymeVJP,
ReverseDiffVJP).
"""
function sensealg(name::AbstractString, autojacvec::AbstractString="ZygoteVJP")
    haskey(SENSEALGS, name) || throw(ArgumentError("unknown sensealg $(name); known: $(join(sort(collect(keys(SENSEALGS))), ", "))"))
    haskey(VJPS, autojacvec) || throw(ArgumentError("unknown autojacvec $(autojacvec); known: $(join(sort(collect(keys(VJPS))), ", "))"))
    return SENSEALGS[name](autojacvec=VJPS[autojacvec]())
end
