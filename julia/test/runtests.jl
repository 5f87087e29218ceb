# `julia --project=julia -e 'using Pkg; Pkg.test()'` runs the installation check.
include(joinpath(@__DIR__, "..", "check.jl"))
