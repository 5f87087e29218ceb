# The vector fields (MATH.md's table), differentiable by Zygote, ReverseDiff, Enzyme and
# ForwardDiff: no mutation, generic element and array types (a `CuArray` state and θ stay
# on the GPU: no scalar indexing, no host arrays mixed in).

_softplus(x, beta, threshold) = beta * x > threshold ? x : log1p(exp(beta * x)) / beta
_sigmoid(x) = inv(one(x) + exp(-x))

function activate(op::ActOp, x)
    k = op.kind
    k === :identity && return x
    k === :tanh && return tanh.(x)
    k === :relu && return max.(x, zero(eltype(x)))
    k === :sigmoid && return _sigmoid.(x)
    k === :elu && return ifelse.(x .> 0, x, op.a .* expm1.(x))
    k === :leaky_relu && return ifelse.(x .> 0, x, op.a .* x)
    k === :hardtanh && return clamp.(x, op.a, op.b)
    k === :softplus && return _softplus.(x, op.a, op.b)
    throw(ArgumentError("unknown activation $(k)"))
end

apply(op::ActOp, θ, x) = activate(op, x)

function apply(op::DenseOp, θ, x)
    Wt = reshape(view(θ, op.weight), op.nin, op.nout)
    y = transpose(Wt) * x
    return op.bias === nothing ? y : y .+ view(θ, op.bias)
end

"""The row of t appended to the network's input: a constant of the state (not
differentiated), on H's device (the GPU extension adds the `CuArray` method)."""
time_row(H, t) = fill(t, 1, size(H, 2))
ChainRulesCore.@non_differentiable time_row(::Any, ::Any)

"""`f(t, H)` for a matrix H of one column per sample (t appended as a last input row
when the network reads it)."""
function network(net::Network, θ, H, t)
    x = net.time_input ? vcat(H, time_row(H, t)) : H
    for op in net.ops
        x = apply(op, θ, x)
    end
    return x
end

"""A scalar of the model: a number when fixed, else a one-element slice of θ through its
function (broadcast against the state, it works on any array type)."""
function value(s::Scalar, θ)
    s.kind === :fixed && return s.value
    x = θ[s.index:s.index]
    s.kind === :identity && return x
    s.kind === :sigmoid && return _sigmoid.(x)
    return _softplus.(x, 1.0, 20.0)
end

"""k(t) = t^(-r/2) e^(t/2), as exp(t/2 - (r/2) log t)."""
nesterov_k(t, r) = exp(t / 2 - r / 2 * log(t))

_stack(dx, dm) = vec(cat(reshape(dx, size(dx, 1), 1, :), reshape(dm, size(dm, 1), 1, :); dims=2))

"""
    field(L::Layout, u, θ, t) -> du

The model's vector field on the flat state `u` (torch's row-major order) with the flat
parameters θ (torch's `parameters()` order):

| model | field |
|---|---|
| node, anode | h' = f(h, t) |
| sonode | h' = v, v' = f([h; v], t) |
| hbnode | h' = m, m' = -γ m + f(h, t) - ξ h |
| ghbnode | h' = σ(m), m' = -γ m + σ(f(h, t)) - ξ h |
| nesterovnode | h = k(t) x, x' = m, m' = -m - f(h, t) - ξ h |
| gnesterovnode | h = σ(k(t)) x, x' = σ(m), m' = -m - σ(f(h, t)) - ξ h |
"""
function field(L::Layout, u::AbstractVector, θ::AbstractVector, t)
    n, model = L.n, L.model
    if !L.second_order
        return vec(network(L.net, θ, reshape(u, n, :), t))
    end
    U = reshape(u, n, 2, :)
    X = U[:, 1, :]
    M = U[:, 2, :]
    if model === :sonode
        return _stack(M, network(L.net, θ, reshape(u, 2n, :), t))
    end
    xi = value(L.xi, θ)
    if model === :hbnode || model === :ghbnode
        gamma = value(L.gamma, θ)
        f = network(L.net, θ, X, t)
        if model === :hbnode
            return _stack(M, -gamma .* M .+ f .- xi .* X)
        end
        return _stack(activate(L.sigma, M), -gamma .* M .+ activate(L.sigma, f) .- xi .* X)
    end
    k = nesterov_k(t, L.r)
    if model === :nesterovnode
        H = k .* X
        return _stack(M, -M .- network(L.net, θ, H, t) .- xi .* H)
    end
    H = activate(L.sigma, k) .* X
    return _stack(activate(L.sigma, M), -M .- activate(L.sigma, network(L.net, θ, H, t)) .- xi .* H)
end

"""The field as an ODE right-hand side `f(u, θ, t)`, counting its calls (forward solve,
and the evaluations the adjoint's vector-Jacobian products make)."""
struct FieldFn
    layout::Layout
    calls::Base.RefValue{Int}
end
FieldFn(L::Layout) = FieldFn(L, Ref(0))

tick!(c::Base.RefValue{Int}) = (c[] += 1; nothing)
ChainRulesCore.@non_differentiable tick!(::Any)

(F::FieldFn)(u, θ, t) = (tick!(F.calls); field(F.layout, u, θ, t))

"""The calls a `FieldFn` has observed so far."""
calls(F::FieldFn) = F.calls[]

"""
    PyRHS(f, vjp)

Call-back mode: a right-hand side evaluated by Python (torch) for networks Julia does not
mirror. `f(du, u, t)` writes the field into `du`; `vjp(ju, jθ, u, t, v)` writes vᵀ∂f/∂u and
vᵀ∂f/∂θ (torch autograd). Its `rrule` makes every SciMLSensitivity adjoint with
`autojacvec=ZygoteVJP()` use torch's vector-Jacobian products.
"""
struct PyRHS{F,V}
    f::F
    vjp::V
    ntheta::Int
end

function (r::PyRHS)(u, θ, t)
    du = zeros(Float64, length(u))
    r.f(du, collect(Float64, u), Float64(t))
    return du
end

function ChainRulesCore.rrule(r::PyRHS, u, θ, t)
    y = r(u, θ, t)
    function pyrhs_pullback(v)
        ju = zeros(Float64, length(u))
        jθ = zeros(Float64, r.ntheta)
        r.vjp(ju, jθ, collect(Float64, u), Float64(t), collect(Float64, ChainRulesCore.unthunk(v)))
        return NoTangent(), ju, jθ, NoTangent()
    end
    return y, pyrhs_pullback
end
