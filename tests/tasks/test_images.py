"""Image tasks (MNIST, CIFAR-10): the paper's architectures and Table 1 parameter counts,
data readers (IDX, cifar-10-batches-py) on synthetic files, the real MNIST when present,
and the errors for bad inputs."""

from __future__ import annotations

import gzip
import pickle
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from helpers import shared_data_dir
from nesterovnode.data import (
    CIFAR10,
    MNIST,
    read_cifar10_batch,
    read_idx,
    read_mnist,
    write_cifar10_batch,
    write_idx,
    write_synthetic_cifar10,
    write_synthetic_mnist,
)
from nesterovnode.data.mnist import MNIST_FILES
from nesterovnode.tasks import count_parameters, get_task
from nesterovnode.tasks.images import (
    PAPER_PARAMETER_COUNTS,
    CIFAR10Task,
    MNISTTask,
    TimeConv2d,
)

CASES = [(task, model) for task, counts in PAPER_PARAMETER_COUNTS.items() for model in counts]
LOOSE = dict(rtol=1e-3, atol=1e-3)  # forward-shape tests need no accuracy, only speed


# -- architectures -----------------------------------------------------------------------


@pytest.mark.parametrize("task_name,model", CASES)
def test_every_image_model_has_the_paper_table_1_parameter_count(task_name, model):
    net = get_task(task_name).build_model(model)
    assert count_parameters(net) == PAPER_PARAMETER_COUNTS[task_name][model]


def test_mnist_nesterov_parts_match_the_worked_example_with_one_learnable_xi():
    # MATH.md: 23109 (initial velocity) + 23610 (ODE) + 39210 (output) + 1 (learnable ξ).
    net = MNISTTask().build_model("nesterovnode")
    parts = [count_parameters(m) for m in (net.encoder, net.dynamics.f, net.head)]
    assert parts == [23109, 23610, 39210]
    assert [name for name, _ in net.dynamics.named_parameters() if not name.startswith("f.")] == [
        "xi.raw"
    ]


def test_cifar_nesterov_parts_match_the_worked_example_with_xi_fixed():
    # MATH.md: 24756 + 25269 + 122890 = 172915; ξ fixed, so no scalar parameter.
    net = CIFAR10Task().build_model("gnesterovnode")
    parts = [count_parameters(m) for m in (net.encoder, net.dynamics.f, net.head)]
    assert parts == [24756, 25269, 122890]
    assert float(net.dynamics.xi()) == pytest.approx(1.5)
    assert not net.dynamics.xi.learnable


def test_heavy_ball_models_on_mnist_carry_gamma_and_xi_and_on_cifar_gamma_only():
    # Table 1: MNIST HBNODE = 85929 + γ + ξ = 85931; CIFAR-10 HBNODE = 172915 + γ = 172916.
    mnist_hb = MNISTTask().build_model("hbnode").dynamics
    cifar_hb = CIFAR10Task().build_model("hbnode").dynamics
    scalars = lambda d: sorted(n for n, _ in d.named_parameters() if not n.startswith("f."))  # noqa: E731
    assert scalars(mnist_hb) == ["gamma_logit", "xi.raw"]
    assert float(mnist_hb.xi().detach()) < 1e-5  # starts at ~0, as the paper's frozen corr = -100
    assert scalars(cifar_hb) == ["gamma_logit"]
    assert scalars(CIFAR10Task().build_model("ghbnode").dynamics) == ["gamma_logit"]


def test_mnist_generalised_models_start_xi_at_softplus_two_like_the_paper_code():
    for model in ("ghbnode", "gnesterovnode"):
        xi = MNISTTask().build_model(model).dynamics.xi
        assert xi.learnable
        assert float(xi.raw.detach()) == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("task_name,model", CASES)
def test_each_model_maps_a_tiny_batch_to_ten_logits_and_counts_nfe(task_name, model):
    torch.manual_seed(0)
    task = get_task(task_name)
    net = task.build_model(model, **LOOSE)
    x = torch.rand(2, *task.input_shape())
    out = net(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    assert net.stats.nfe_forward > 0


@pytest.mark.parametrize("task_name", ["mnist", "cifar10"])
@pytest.mark.parametrize("model", ["anode", "sonode", "hbnode", "nesterovnode", "gnesterovnode"])
def test_initial_state_reads_out_the_image_in_the_first_channels_at_t0(task_name, model):
    task = get_task(task_name)
    net = task.build_model(model)
    x = torch.rand(2, *task.input_shape())
    state = net.initial_state(x)
    h0 = net.dynamics.readout(net.block.ts[0], state)
    c = task.in_channels
    torch.testing.assert_close(h0[:, :c], x, rtol=1e-6, atol=1e-6)
    n = task.widths[model][0]
    assert h0.shape == (2, n, task.image_size, task.image_size)
    if model == "anode":
        assert (h0[:, c:] == 0).all()


def test_ode_network_reads_2n_channels_for_sonode_and_n_otherwise():
    task = CIFAR10Task()
    assert task.build_model("sonode").dynamics.f.conv1.in_channels == 2 * 12 + 1
    assert task.build_model("hbnode").dynamics.f.conv1.in_channels == 12 + 1
    assert task.build_model("anode").dynamics.f.conv3.out_channels == 13


@pytest.mark.parametrize("kernel", [1, 3])
def test_time_padded_convolution_adds_t_times_the_last_input_channel_weights(kernel):
    # conv([x, t·1]) = conv_x(x) + t · conv_t(1): the t channel is the last input channel,
    # and zero padding makes its contribution smaller at the borders for k = 3.
    torch.manual_seed(0)
    conv = TimeConv2d(4, 6, kernel).double()
    x = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    t = torch.tensor(1.37, dtype=torch.float64)
    w_x, w_t, pad = conv.weight[:, :-1], conv.weight[:, -1:], kernel // 2
    ones = torch.ones(1, 1, 7, 7, dtype=torch.float64)
    expected = F.conv2d(x, w_x, conv.bias, padding=pad) + t * F.conv2d(ones, w_t, padding=pad)
    torch.testing.assert_close(conv(t, x), expected, rtol=1e-12, atol=1e-12)
    assert conv(t, x).shape == (3, 6, 7, 7)


def test_unknown_build_option_is_refused_with_the_valid_ones():
    with pytest.raises(TypeError, match="valid: config, solver"):
        MNISTTask().build_model("node", tolerance=1e-3)


def test_image_tasks_come_with_the_paper_protocol():
    mnist, cifar = get_task("mnist"), get_task("cifar10")
    assert (mnist.defaults.batch_size, cifar.defaults.batch_size) == (64, 256)
    for task in (mnist, cifar):
        d = task.defaults
        assert (d.epochs, d.tol, d.solve.solver, d.solve.sensitivity) == (
            40,
            1e-5,
            "DP5",
            "adjoint",
        )
        assert d.ts == (1.0, 2.0)
    block = mnist.build_model("node").block
    assert block.config.rtol == 1e-5 and block.config.atol == 1e-5


# -- MNIST from IDX files ----------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_idx_files_round_trip_gzipped_and_raw(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.gz" if compress else "a"), arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    raw = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])  # magic 0x00000803: uint8, 3 dimensions
    assert np.array_equal(read_idx(path), arr)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f", floats)), floats)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_mnist_reader_returns_uint8_images_and_labels_from_idx_files(tmp_path, compress):
    write_synthetic_mnist(tmp_path, n_train=12, n_test=5, compress=compress)
    images, labels = read_mnist(tmp_path, "train")
    assert images.dtype == torch.uint8 and labels.dtype == torch.uint8
    assert images.shape == (12, 28, 28) and labels.shape == (12,)
    assert read_mnist(tmp_path, "test")[0].shape == (5, 28, 28)


def test_mnist_reader_finds_the_torchvision_raw_layout(tmp_path):
    write_synthetic_mnist(tmp_path / "MNIST" / "raw", n_train=3, n_test=2)
    assert read_mnist(tmp_path, "train")[0].shape == (3, 28, 28)


def test_mnist_dataset_scales_pixels_to_the_unit_interval(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=8, n_test=4)
    raw_images, raw_labels = read_mnist(tmp_path, "train")
    ds = MNIST(tmp_path, train=True)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], raw_images[3].float() / 255)
    assert int(y) == int(raw_labels[3])
    xb, yb = next(iter(DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 1, 28, 28) and yb.dtype == torch.int64
    torch.testing.assert_close(xb[3], x)


def test_idx_file_with_a_wrong_magic_number_is_rejected(tmp_path):
    bad = tmp_path / MNIST_FILES["train"][0]
    bad.write_bytes(b"\x12\x34\x08\x03" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_truncated_idx_file_is_rejected(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_mnist_images_of_the_wrong_size_are_rejected(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=4, n_test=2, compress=False)
    write_idx(tmp_path / MNIST_FILES["train"][0], np.zeros((4, 27, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        read_mnist(tmp_path, "train")


def test_mnist_labels_that_disagree_with_the_images_are_rejected(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=4, n_test=2, compress=False)
    write_idx(tmp_path / MNIST_FILES["train"][1], np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="4 images but .* 3 labels"):
        read_mnist(tmp_path, "train")


def test_missing_mnist_directory_says_which_files_go_where_and_how_to_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        MNISTTask().datasets(data_dir=str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "--download" in msg and "NESTEROVNODE_DATA" in msg


def test_mnist_download_without_torchvision_explains_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(RuntimeError, match="pip install"):
        read_mnist(tmp_path, "train", download=True)


def test_mnist_task_serves_seeded_subsets_of_the_splits(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=30, n_test=10)
    task = MNISTTask(train_limit=7, test_limit=4)
    train, test = task.datasets(seed=3, data_dir=str(tmp_path))
    assert (len(train), len(test)) == (7, 4)
    assert train.indices == task.datasets(seed=3, data_dir=str(tmp_path))[0].indices
    assert train.indices != task.datasets(seed=4, data_dir=str(tmp_path))[0].indices


_REAL = shared_data_dir()
_REAL_MNIST = _REAL / "mnist" if _REAL is not None else None


@pytest.mark.skipif(
    _REAL_MNIST is None or not _REAL_MNIST.is_dir(),
    reason="real MNIST not present (set NESTEROVNODE_DATA to a folder with mnist/*.gz)",
)
def test_real_mnist_has_60000_training_and_10000_test_digits():
    train_x, train_y = read_mnist(_REAL_MNIST, "train")
    test_x, test_y = read_mnist(_REAL_MNIST, "test")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert sorted(train_y.unique().tolist()) == list(range(10))
    assert sorted(test_y.unique().tolist()) == list(range(10))
    # the first training labels of the real file (LeCun's order)
    assert train_y[:5].tolist() == [5, 0, 4, 1, 9]
    train, test = MNISTTask().datasets(data_dir=str(_REAL))
    assert (len(train), len(test)) == (60000, 10000)
    x, _ = train[0]
    assert 0.0 == float(x.min()) and float(x.max()) == 1.0


# -- CIFAR-10 in the cifar-10-batches-py format ------------------------------------------


def test_cifar10_pipeline_runs_end_to_end_on_synthetic_batches(tmp_path):
    torch.manual_seed(0)
    folder = write_synthetic_cifar10(tmp_path, n_train=12, n_test=5, seed=1)
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]
    task = get_task("cifar10")
    train, test = task.datasets(seed=0, data_dir=str(tmp_path))
    assert (len(train), len(test)) == (12, 5)
    x, y = next(iter(DataLoader(train, batch_size=4, shuffle=True)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    net = task.build_model("gnesterovnode", **LOOSE)
    opt = torch.optim.Adam(net.parameters(), lr=task.defaults.lr)
    before = [p.detach().clone() for p in net.parameters()]
    loss = task.loss_fn(net(x), y)
    loss.backward()
    assert net.stats.nfe_backward > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert 0 <= int(task.correct(net(x), y)) <= 4


def test_cifar10_batches_read_back_the_pixels_and_labels_written(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 3, 32, 32)).astype(np.uint8)
    path = write_cifar10_batch(tmp_path / "data_batch_1", images, [7, 0, 9])
    back, labels = read_cifar10_batch(path)
    assert np.array_equal(back, images) and labels.tolist() == [7, 0, 9]
    # the row layout: 1024 red, 1024 green, 1024 blue values
    with open(path, "rb") as fh:
        row = pickle.load(fh, encoding="bytes")[b"data"][1]
    assert np.array_equal(row[1024:2048].reshape(32, 32), images[1, 1])


def test_cifar10_batch_with_the_wrong_image_shape_is_rejected_clearly(tmp_path):
    bad = {b"data": np.zeros((4, 1024), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="3072 = 3x32x32"):
        read_cifar10_batch(path)
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        write_cifar10_batch(tmp_path / "x", np.zeros((2, 1, 28, 28), np.uint8), [0, 1])


def test_cifar10_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load .*print"):
        read_cifar10_batch(path)


def test_missing_cifar10_folder_says_which_files_go_where_and_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10(tmp_path, train=False)
    msg = str(err.value)
    assert "test_batch" in msg and "cifar-10-batches-py" in msg and str(tmp_path) in msg
    assert "--download" in msg and "cifar-10-python.tar.gz" in msg


def test_cifar10_download_without_torchvision_explains_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(RuntimeError, match="pip install"):
        CIFAR10(tmp_path, download=True)
