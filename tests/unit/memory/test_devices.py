"""core.memory.devices: error-tolerant NVML telemetry, snapshots, the poller and memory budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fake_nvml as fk
import pytest

from weightgate.core.memory import devices, nvml
from weightgate.core.memory.devices import (
    MIN_POLL_INTERVAL_S,
    DevicePoller,
    DeviceSnapshot,
    GpuInfo,
    HostMemory,
    budget_bytes,
    snapshot,
)
from weightgate.core.memory.nvml import NA, REASON_NO_DRIVER, REASON_NO_GPU, REASON_NO_LIBRARY, nvml_query, nvml_status

GiB = 1024**3
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _fresh_nvml_state():
    nvml._reset_for_tests()
    yield
    nvml._reset_for_tests()


def install(monkeypatch, fake) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def two_gpus() -> list[fk.FakeGpu]:
    return [
        fk.FakeGpu(
            name="NVIDIA A100-SXM4-80GB",
            uuid="GPU-aaaa",
            total=80 * GiB,
            used=12 * GiB,
            util=45,
            processes=[(4242, 10 * GiB), (4343, None)],
            graphics_processes=[(4242, 10 * GiB), (5555, 1 * GiB)],
        ),
        fk.FakeGpu(name="NVIDIA L4", uuid="GPU-bbbb", total=24 * GiB, used=1 * GiB, util=0),
    ]


# ----- the fake itself mirrors pynvml ----------------------------------------------------


def test_fake_error_hierarchy_matches_real_binding():
    err = fk.NVMLError(fk.NVML_ERROR_GPU_IS_LOST)
    assert type(err) is fk.NVMLError_GpuIsLost
    assert isinstance(fk.NVMLError_NotSupported(), fk.NVMLError)
    assert str(fk.NVMLError_LibraryNotFound()) == "NVML Shared Library Not Found"
    assert fk.NVMLError_DriverNotLoaded().value == fk.NVML_ERROR_DRIVER_NOT_LOADED

    real = pytest.importorskip("pynvml")
    for name in dir(real):
        if name.startswith("NVML_ERROR_") and hasattr(fk, name):
            assert getattr(fk, name) == getattr(real, name), name
    fake = fk.FakeNVML()
    for name in (
        "NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_NotSupported",
        "NVMLError_GpuIsLost", "NVMLError_NoPermission", "NVMLError_FunctionNotFound",
        "NVMLError_Uninitialized", "NVML_DEVICE_MIG_ENABLE",
    ):
        assert hasattr(real, name) and hasattr(fake, name), name
    # every function the fake offers exists in the real binding, with compatible arity
    import inspect

    for name, member in inspect.getmembers(fk.FakeNVML, inspect.isfunction):
        if name.startswith("nvml"):
            assert hasattr(real, name), name
            fake_params = list(inspect.signature(member).parameters)[1:]
            real_params = list(inspect.signature(getattr(real, name)).parameters)
            assert len(fake_params) == len(real_params), (name, fake_params, real_params)


# ----- nvml_query --------------------------------------------------------------------------


def test_query_initialises_once_and_returns_values(monkeypatch):
    fake = fk.FakeNVML(two_gpus())
    install(monkeypatch, fake)
    assert nvml_query("nvmlDeviceGetCount") == 2
    assert nvml_query("nvmlSystemGetDriverVersion") == "550.54.15"
    snapshot()
    snapshot()
    assert fake.init_calls == 1


def test_query_turns_every_failure_into_the_default(monkeypatch):
    gpu = fk.FakeGpu(util=None, errors={"nvmlDeviceGetUUID": fk.NVML_ERROR_UNKNOWN})
    fake = fk.FakeNVML([gpu])
    install(monkeypatch, fake)
    handle = nvml_query("nvmlDeviceGetHandleByIndex", 0)
    assert nvml_query("nvmlDeviceGetUtilizationRates", handle) is NA  # NotSupported
    assert nvml_query("nvmlDeviceGetUtilizationRates", handle, default=None) is None
    assert nvml_query("nvmlDeviceGetUUID", handle, default="?") == "?"  # any NVMLError
    assert nvml_query("nvmlDeviceGetHandleByIndex", 7, default=-1) == -1  # invalid argument
    assert nvml_query("nvmlDeviceGetNoSuchThing", handle, default=0) == 0  # old binding
    assert nvml_query("nvmlDeviceGetName", "not a handle", default="x") == "x"
    fake.versioned_processes_only = True  # unversioned call raises a non-NVMLError
    assert nvml_query("nvmlDeviceGetComputeRunningProcesses", handle, default=[]) == []
    assert not NA and repr(NA) == "N/A"


def test_query_reinitialises_after_external_shutdown(monkeypatch):
    fake = fk.FakeNVML(two_gpus())
    install(monkeypatch, fake)
    assert nvml_query("nvmlDeviceGetCount") == 2
    fake.nvmlShutdown()  # someone else shut NVML down
    assert nvml_query("nvmlDeviceGetCount") == 2
    assert fake.init_calls == 2


def test_query_without_library_returns_default(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert nvml_query("nvmlDeviceGetCount", default=0) == 0
    assert nvml_status() == REASON_NO_LIBRARY


# ----- snapshot: no GPU paths ---------------------------------------------------------------


def test_no_nvml_library_at_all(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    snap = snapshot()
    assert snap.gpus == [] and snap.driver is None
    assert snap.reason == REASON_NO_LIBRARY
    assert snap.host.total and snap.host.available
    assert snap.summary().startswith("RAM ") and "no GPU (no NVML library)" in snap.summary()


def test_library_present_but_shared_object_missing(monkeypatch):
    install(monkeypatch, fk.FakeNVML(init_error=fk.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert snapshot().reason == REASON_NO_LIBRARY


def test_no_driver(monkeypatch):
    fake = fk.FakeNVML(two_gpus(), init_error=fk.NVML_ERROR_DRIVER_NOT_LOADED)
    install(monkeypatch, fake)
    snap = snapshot()
    assert snap.gpus == [] and snap.reason == REASON_NO_DRIVER
    assert "no GPU" in snap.summary()
    snapshot()
    assert fake.init_calls == 1  # a failed init is remembered, not retried every poll


def test_no_permission_and_version_mismatch_have_reasons(monkeypatch):
    install(monkeypatch, fk.FakeNVML(init_error=fk.NVML_ERROR_NO_PERMISSION))
    assert snapshot().reason == nvml.REASON_NO_PERMISSION
    nvml._reset_for_tests()
    install(monkeypatch, fk.FakeNVML(init_error=fk.NVML_ERROR_LIB_RM_VERSION_MISMATCH))
    assert snapshot().reason == nvml.REASON_VERSION_MISMATCH


def test_no_gpu_found(monkeypatch):
    install(monkeypatch, fk.FakeNVML([]))
    snap = snapshot()
    assert snap.gpus == [] and snap.reason == REASON_NO_GPU
    assert snap.driver == "550.54.15"
    assert snap.summary().endswith("· no GPU")


def test_device_count_error(monkeypatch):
    install(monkeypatch, fk.FakeNVML(two_gpus(), count_error=fk.NVML_ERROR_UNKNOWN))
    snap = snapshot()
    assert snap.gpus == [] and snap.reason == "NVML error: Unknown Error"


def test_real_machine_path():
    snap = snapshot()  # no fake: whatever this machine has
    assert isinstance(snap, DeviceSnapshot)
    assert snap.host.total and snap.host.total > 0
    assert snap.host.available and 0 < snap.host.available <= snap.host.total
    assert snap.time > 0
    if snap.gpus:  # a GPU box
        assert snap.reason is None and "GPU0" in snap.summary()
    else:
        assert snap.reason  # e.g. REASON_NO_LIBRARY on a CPU-only box
        assert "no GPU" in snap.summary()
        assert budget_bytes(snap) == snap.host.available
    json.dumps(snap.to_dict())


# ----- snapshot: GPUs -----------------------------------------------------------------------


def test_two_gpus_with_processes(monkeypatch):
    install(monkeypatch, fk.FakeNVML(two_gpus()))
    snap = snapshot()
    assert snap.reason is None and snap.driver == "550.54.15"
    g0, g1 = snap.gpus
    assert (g0.index, g0.name, g0.uuid) == (0, "NVIDIA A100-SXM4-80GB", "GPU-aaaa")
    assert (g0.memory_total, g0.memory_used, g0.memory_free) == (80 * GiB, 12 * GiB, 68 * GiB)
    assert g0.utilization_gpu == 45 and not g0.is_mig and g0.error is None
    # compute and graphics lists merged by pid; unknown per-process memory stays None
    assert g0.processes == [(4242, 10 * GiB), (4343, None), (5555, 1 * GiB)]
    assert g1.processes == [] and g1.memory_free == 23 * GiB
    assert snap.summary() == "GPU0 12.0/80.0 GiB 45% · GPU1 1.0/24.0 GiB 0% · RAM " + (
        f"{snap.host.used / GiB:.1f}/{snap.host.total / GiB:.1f} GiB"
    )
    assert budget_bytes(snap) == 68 * GiB  # the biggest GPU
    assert budget_bytes(snap, "cuda:1") == budget_bytes(snap, 1) == 23 * GiB
    assert budget_bytes(snap, "cpu") == snap.host.available
    assert budget_bytes(snap, "cuda:5") is None
    with pytest.raises(ValueError):
        budget_bytes(snap, "tpu")
    json.dumps(snap.to_dict())


def test_old_driver_falls_back_to_versioned_process_queries(monkeypatch):
    install(monkeypatch, fk.FakeNVML(two_gpus(), versioned_processes_only=True))
    g0 = snapshot().gpus[0]
    assert g0.processes == [(4242, 10 * GiB), (4343, None), (5555, 1 * GiB)]


def test_mig_enabled_gpu_with_two_mig_devices(monkeypatch):
    mig_a = fk.FakeGpu(name="NVIDIA A100-SXM4-80GB MIG 3g.40gb", uuid="MIG-a", total=40 * GiB,
                       used=5 * GiB, util=None, processes=[(777, 4 * GiB)])
    mig_b = fk.FakeGpu(name="NVIDIA A100-SXM4-80GB MIG 2g.20gb", uuid="MIG-b", total=20 * GiB,
                       used=0, util=None)
    parent = fk.FakeGpu(uuid="GPU-mig", total=80 * GiB, used=5 * GiB, util=None,
                        mig_mode=fk.NVML_DEVICE_MIG_ENABLE, mig_devices=[mig_a, None, mig_b],
                        processes=[(777, 4 * GiB)])
    plain = fk.FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-plain", total=40 * GiB,
                       used=30 * GiB, util=90, mig_mode=fk.NVML_DEVICE_MIG_DISABLE)
    install(monkeypatch, fk.FakeNVML([parent, plain]))
    snap = snapshot()
    labels = [g.label for g in snap.gpus]
    assert labels == ["GPU0", "GPU0/MIG0", "GPU0/MIG2", "GPU1"]
    gpu0, m0, m2, gpu1 = snap.gpus
    assert gpu0.mig_enabled and not gpu0.is_mig and gpu0.processes == [] and not gpu0.usable
    assert m0.is_mig and m0.index == 0 and m0.mig_index == 0 and m0.uuid == "MIG-a"
    assert (m0.memory_total, m0.memory_free) == (40 * GiB, 35 * GiB)
    assert m0.utilization_gpu is None and m0.error is None  # NotSupported is not an error
    assert m0.processes == [(777, 4 * GiB)]
    assert m2.mig_index == 2 and m2.memory_free == 20 * GiB
    assert not gpu1.mig_enabled and gpu1.utilization_gpu == 90
    # the parent is not listed in the summary: its MIG devices are
    assert snap.summary().startswith("GPU0/MIG0 5.0/40.0 GiB · GPU0/MIG2 0.0/20.0 GiB · GPU1 30.0/40.0 GiB 90%")
    # budget: the biggest usable device is MIG0 (40 GiB total), not the 80 GiB parent
    assert budget_bytes(snap) == 35 * GiB
    assert budget_bytes(snap, 0) is None  # GPU0 as a whole is not allocatable


def test_mig_enabled_without_instances_is_still_shown(monkeypatch):
    parent = fk.FakeGpu(total=80 * GiB, used=0, util=None, mig_mode=fk.NVML_DEVICE_MIG_ENABLE)
    install(monkeypatch, fk.FakeNVML([parent]))
    snap = snapshot()
    assert len(snap.gpus) == 1 and snap.gpus[0].mig_enabled
    assert snap.summary().startswith("GPU0 MIG 0.0/80.0 GiB")
    assert budget_bytes(snap) == snap.host.available  # no usable GPU memory: fall back to RAM
    assert budget_bytes(snap, "cuda") is None


def test_memory_info_not_supported(monkeypatch):
    unified = fk.FakeGpu(name="NVIDIA GB10", total=None, util=12, processes=[(1, None)])
    install(monkeypatch, fk.FakeNVML([unified]))
    snap = snapshot()
    (gpu,) = snap.gpus
    assert (gpu.memory_total, gpu.memory_used, gpu.memory_free) == (None, None, None)
    assert gpu.utilization_gpu == 12 and gpu.error is None
    assert gpu.processes == [(1, None)]
    assert "GPU0 n/a 12%" in snap.summary()
    assert budget_bytes(snap) == snap.host.available  # unified memory: the host RAM is the budget


def test_gpu_lost_mid_query(monkeypatch):
    lost = fk.FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-lost", lose_after=2)  # name, uuid ok
    fine = fk.FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-fine", total=80 * GiB, used=GiB, util=3)
    fake = fk.FakeNVML([lost, fine])
    install(monkeypatch, fake)
    snap = snapshot()
    g0, g1 = snap.gpus
    assert (g0.name, g0.uuid) == ("NVIDIA H100 80GB HBM3", "GPU-lost")
    assert g0.memory_total is None and g0.utilization_gpu is None and g0.processes == []
    assert g0.error == "GPU is lost"
    assert g1.error is None and g1.memory_free == 79 * GiB
    assert "GPU0 GPU is lost" in snap.summary() and "GPU1 1.0/80.0 GiB 3%" in snap.summary()
    assert budget_bytes(snap) == 79 * GiB
    # once lost, the device is not asked again in the same snapshot
    assert fake.log.count("nvmlDeviceGetUtilizationRates") == 1  # only GPU1's


def test_gpu_lost_before_handle(monkeypatch):
    gpu = fk.FakeGpu(errors={"nvmlDeviceGetHandleByIndex": fk.NVML_ERROR_GPU_IS_LOST})
    install(monkeypatch, fk.FakeNVML([gpu, fk.FakeGpu()]))
    snap = snapshot()
    assert snap.gpus[0].error == "GPU is lost" and snap.gpus[0].memory_total is None
    assert snap.gpus[1].error is None


def test_snapshot_never_raises_even_on_internal_bugs(monkeypatch):
    def boom(index):
        raise RuntimeError("bug")

    install(monkeypatch, fk.FakeNVML(two_gpus()))
    monkeypatch.setattr(devices, "_read_gpu", boom)
    snap = snapshot()
    assert snap.gpus == [] and "bug" in snap.reason and snap.host.total


def test_host_memory_without_psutil(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "psutil", None)
    snap = snapshot()
    assert snap.host == HostMemory(None, None, None)
    assert snap.summary() == "RAM n/a · no GPU (no NVML library)"
    assert budget_bytes(snap) is None


# ----- poller ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_query():
    calls = []

    def query() -> DeviceSnapshot:
        snap = DeviceSnapshot(gpus=[], host=HostMemory(1, 1, 1), reason=REASON_NO_GPU, time=len(calls))
        calls.append(snap)
        return snap

    return query, calls


@pytest.mark.parametrize("asked", [0, 0.1, 0.49, -3, float("nan"), float("inf") * -1])
def test_poller_clamps_interval(asked):
    assert DevicePoller(asked).interval_s == MIN_POLL_INTERVAL_S == 0.5


def test_poller_keeps_longer_intervals():
    assert DevicePoller().interval_s == 1.0
    assert DevicePoller(2.5).interval_s == 2.5


def test_poller_caches_within_interval():
    clock = FakeClock()
    query, calls = counting_query()
    poller = DevicePoller(1.0, clock=clock, query=query)
    assert poller.latest is None
    first = poller.poll()
    assert len(calls) == 1
    clock.now += 0.4
    assert poller.poll() is first
    clock.now += 0.5  # 0.9 s: still cached
    assert poller.poll() is first and len(calls) == 1
    clock.now += 0.1  # 1.0 s: refresh
    second = poller.poll()
    assert second is not first and len(calls) == 2 and poller.latest is second


def test_poller_hammered_queries_at_most_twice_a_second():
    clock = FakeClock()
    query, calls = counting_query()
    poller = DevicePoller(0.01, clock=clock, query=query)
    for _ in range(1000):  # 10 simulated seconds, a call every 10 ms
        poller.poll()
        clock.now += 0.01
    assert len(calls) <= 21


def test_poller_uses_real_snapshot_by_default(monkeypatch):
    install(monkeypatch, fk.FakeNVML(two_gpus()))
    snap = DevicePoller().poll()
    assert len(snap.gpus) == 2


# ----- budget with a hand-built snapshot ---------------------------------------------------------


def test_budget_picks_biggest_gpu_not_most_free():
    host = HostMemory(64 * GiB, 8 * GiB, 56 * GiB)
    gpus = [
        GpuInfo(index=0, name="small", memory_total=24 * GiB, memory_used=0, memory_free=24 * GiB),
        GpuInfo(index=1, name="big", memory_total=80 * GiB, memory_used=70 * GiB, memory_free=10 * GiB),
    ]
    snap = DeviceSnapshot(gpus=gpus, host=host)
    assert budget_bytes(snap) == 10 * GiB
    assert budget_bytes(snap, "auto") == budget_bytes(snap, "cuda") == 10 * GiB
    assert budget_bytes(DeviceSnapshot(gpus=[], host=host)) == 56 * GiB
    assert budget_bytes(DeviceSnapshot(gpus=[], host=host), "cuda") is None


# ----- import cost -------------------------------------------------------------------------------


def test_import_is_cheap():
    code = (
        "import sys, weightgate.core.memory.devices\n"
        "bad = [m for m in ('pynvml', 'psutil', 'torch', 'textual', 'rich') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
