# The layout of θ, read from the description Python exports (format "nesterovnode-layout/1").
# Offsets in the description are 0-based (Python's); here they become 1-based ranges.

abstract type Op end

"""A linear layer `y = W x + b`: torch's weight `[out, in]` is stored row-major, so its
slice of θ reshaped column-major to `(in, out)` is Wᵀ."""
struct DenseOp <: Op
    weight::UnitRange{Int}
    bias::Union{Nothing,UnitRange{Int}}
    nin::Int
    nout::Int
end

"""An elementwise activation: `kind` one of identity, tanh, relu, sigmoid, elu (a = α),
leaky_relu (a = negative slope), hardtanh (a = min, b = max), softplus (a = β, b = threshold)."""
struct ActOp <: Op
    kind::Symbol
    a::Float64
    b::Float64
end

const ACTIVATIONS = (:identity, :tanh, :relu, :sigmoid, :elu, :leaky_relu, :hardtanh, :softplus)

"""The network f: `ops` in order; `time_input` true when t is appended as the last input
feature (`TimeConcat`), false for an autonomous network."""
struct Network
    ops::Vector{Op}
    time_input::Bool
    nin::Int
    nout::Int
end

"""A scalar of the model (γ, ξ): `:fixed` (value), or θ[index] through `:identity`,
`:sigmoid` or `:softplus`."""
struct Scalar
    kind::Symbol
    index::Int
    value::Float64
end

const MODELS = (:node, :anode, :sonode, :hbnode, :ghbnode, :nesterovnode, :gnesterovnode)

"""Everything a field needs: the model, its state width n (features per row), the network,
γ, ξ, σ, the Nesterov factor r and the length of θ."""
struct Layout
    model::Symbol
    n::Int
    second_order::Bool
    net::Network
    gamma::Scalar
    xi::Scalar
    sigma::ActOp
    r::Float64
    ntheta::Int
end

_range(d) = (d["offset"] + 1):(d["offset"] + prod(Int.(d["shape"]); init=1))

function _activation(d)
    kind = Symbol(d["kind"])
    kind in ACTIVATIONS || throw(ArgumentError("unknown activation $(kind); known: $(ACTIVATIONS)"))
    kind === :elu && return ActOp(kind, Float64(get(d, "alpha", 1.0)), 0.0)
    kind === :leaky_relu && return ActOp(kind, Float64(get(d, "slope", 0.01)), 0.0)
    kind === :hardtanh && return ActOp(kind, Float64(get(d, "min", -1.0)), Float64(get(d, "max", 1.0)))
    kind === :softplus && return ActOp(kind, Float64(get(d, "beta", 1.0)), Float64(get(d, "threshold", 20.0)))
    return ActOp(kind, 0.0, 0.0)
end

function _op(d)
    if d["kind"] == "dense"
        bias = get(d, "bias", nothing)
        return DenseOp(_range(d["weight"]), bias === nothing ? nothing : _range(bias), Int(d["in"]), Int(d["out"]))
    end
    return _activation(d)
end

function _scalar(d)
    d === nothing && return Scalar(:fixed, 0, 0.0)
    kind = Symbol(d["kind"])
    kind === :fixed && return Scalar(kind, 0, Float64(d["value"]))
    kind in (:identity, :sigmoid, :softplus) || throw(ArgumentError("unknown scalar kind $(kind)"))
    return Scalar(kind, Int(d["offset"]) + 1, 0.0)
end

"""
    parse_layout(description) -> Layout

`description` is the JSON text (or the parsed Dict) of `dynamics_layout(dynamics)`.
"""
parse_layout(text::AbstractString) = parse_layout(JSON.parse(text))

function parse_layout(d::AbstractDict)
    d["format"] == "nesterovnode-layout/1" || throw(ArgumentError("unknown layout format $(d["format"])"))
    model = Symbol(d["model"])
    model in MODELS || throw(ArgumentError("unknown model $(model); known: $(MODELS)"))
    net = d["network"]
    network = Network(Op[_op(o) for o in net["ops"]], net["time_input"] == "concat", Int(net["inputs"]), Int(net["outputs"]))
    sigma = haskey(d, "sigma") && d["sigma"] !== nothing ? _activation(d["sigma"]) : ActOp(:identity, 0.0, 0.0)
    return Layout(model, Int(d["state"]["features"]), Bool(d["state"]["second_order"]), network,
                  _scalar(get(d, "gamma", nothing)), _scalar(get(d, "xi", nothing)), sigma,
                  Float64(get(d, "r", 3.0)), Int(d["theta_length"]))
end
