# Layouts the checks share (check.jl, check_gpu.jl).

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

