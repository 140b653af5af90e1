"""The precision a training computes in: what ``training.mixed_precision`` asks for, and what this machine has.

``true`` forces mixed precision, ``false`` float32; ``"auto"`` lets the machine
choose: float16 compute on a GPU, bfloat16 on a CPU with bfloat16
instructions (AMX or AVX-512 BF16: there it is about 2-4x the float32 matmul),
float32 elsewhere (without them bfloat16 is emulated, slower than float32).
Variables, batch-norm statistics and the softmax stay float32 in every case.

oneDNN, which runs TensorFlow's CPU kernels, can be capped below the CPU's
instruction sets with ``ONEDNN_MAX_CPU_ISA`` (``AVX2``, ``AVX512_CORE_VNNI``):
``"auto"`` honours the cap, so one machine can stand in for the others.
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from fruitkeras.errors import FruitkerasError

CPUINFO = "/proc/cpuinfo"  # Linux's; elsewhere the CPU's instructions cannot be told
ISA_CAP = "ONEDNN_MAX_CPU_ISA"
AUTO = "auto"

# oneDNN's ISA names (x64) and their bits (``dnnl_cpu_isa_t``): a cap admits an ISA whose bits it holds all of.
ONEDNN_ISAS = {"SSE41": 0x1, "AVX": 0x3, "AVX2": 0x7, "AVX2_VNNI": 0xF, "AVX2_VNNI_2": 0x1F, "AVX512_CORE": 0x27,
               "AVX512_CORE_VNNI": 0x67, "AVX512_CORE_BF16": 0xE7, "AVX10_1_512": 0x1EF, "AVX512_CORE_FP16": 0x1EF,
               "AVX10_1_512_AMX": 0xFEF, "AVX512_CORE_AMX": 0xFEF, "AVX10_1_512_AMX_FP16": 0x1FEF,
               "AVX512_CORE_AMX_FP16": 0x1FEF}
UNCAPPED = ("ALL", "DEFAULT")
COMPUTES = ("float32", "bfloat16", "float16")  # what a Precision computes in
BFLOAT16_FLAGS = {"amx_bf16": "AVX512_CORE_AMX", "avx512_bf16": "AVX512_CORE_BF16"}  # cpuinfo flag: its ISA


@dataclass(frozen=True)
class Precision:
    """The chosen compute: ``policy`` is Keras's dtype policy name, ``reason`` says why, in words."""

    policy: str  # "float32", "mixed_bfloat16" or "mixed_float16"
    setting: object  # training.mixed_precision as given: True, False or "auto"
    reason: str

    @property
    def compute(self):
        return self.policy.removeprefix("mixed_")

    @property
    def mixed(self):
        return self.policy != "float32"

    def record(self):
        """What run.json keeps."""
        return {"compute": self.compute, "policy": self.policy, "setting": self.setting, "reason": self.reason}

    @classmethod
    def from_record(cls, stored):
        """The Precision that ``record()`` wrote."""
        return cls(stored["policy"], stored["setting"], stored["reason"])


def recorded_compute(record):
    """The compute dtype a run trained in, from its run.json (runs from before "precision" was recorded keep it
    in "distribute"); None when the record says nothing."""
    if isinstance(record.get("precision"), dict):
        return record["precision"].get("compute")
    if "mixed_precision" in (record.get("distribute") or {}):
        return (record["distribute"]["mixed_precision"] or "float32").removeprefix("mixed_")
    return None


def cpu_flags(cpuinfo=None):
    """The CPU's instruction-set flags (``/proc/cpuinfo``); None where they cannot be read."""
    try:
        text = Path(cpuinfo or CPUINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return None


def isa_cap(environ=None):
    """``ONEDNN_MAX_CPU_ISA`` as oneDNN's ISA name (upper case), None when unset or uncapped."""
    value = (environ if environ is not None else os.environ).get(ISA_CAP, "").strip().upper()
    if not value or value in UNCAPPED:
        return None
    if value not in ONEDNN_ISAS:
        raise FruitkerasError(f"{ISA_CAP}={value} is not one of oneDNN's ISA names "
                              f"({', '.join([*ONEDNN_ISAS, *UNCAPPED])})")
    return value


def bfloat16_instructions(flags, cap=None):
    """The bfloat16 instruction sets (cpuinfo flags) that oneDNN may use under ``cap``, e.g. ['amx_bf16']."""
    return [flag for flag, isa in BFLOAT16_FLAGS.items()
            if flag in flags and (cap is None or ONEDNN_ISAS[isa] & ONEDNN_ISAS[cap] == ONEDNN_ISAS[isa])]


def check_setting(value):
    """training.mixed_precision's check (``architecture``): true, false or "auto"."""
    if value is True or value is False or value == AUTO:
        return value
    raise ValueError('must be true, false or "auto"')


def choose(setting, gpu=None, flags=None, cap=None):
    """The ``Precision`` for ``setting`` on this machine.  ``gpu``, ``flags`` and ``cap`` default to what the machine
    and ``ONEDNN_MAX_CPU_ISA`` say (given, they describe another machine: the tests' CPUs)."""
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    if setting is False:
        return Precision("float32", setting, "training.mixed_precision is false")
    if setting is True:
        return Precision(mixed, setting, "training.mixed_precision is true" + ("" if gpu else _cpu_words(flags, cap)))
    if gpu:
        return Precision(mixed, setting, "auto: a GPU computes in float16")
    flags = cpu_flags() if flags is None else flags
    cap = isa_cap() if cap is None else cap
    if flags is None:
        return Precision("float32", setting, "auto: the CPU's instructions cannot be read here (no /proc/cpuinfo)")
    usable = bfloat16_instructions(flags, cap)
    if usable:
        return Precision(mixed, setting, f"auto: this CPU has bfloat16 instructions ({', '.join(usable)})"
                         + (f" under {ISA_CAP}={cap}" if cap else ""))
    present = [flag for flag in BFLOAT16_FLAGS if flag in flags]
    if present:
        return Precision("float32", setting, f"auto: {ISA_CAP}={cap} keeps oneDNN from this CPU's bfloat16 "
                                             f"instructions ({', '.join(present)})")
    return Precision("float32", setting, "auto: this CPU has no bfloat16 instructions (amx_bf16, avx512_bf16), "
                                         "where bfloat16 would be slower than float32")


def _cpu_words(flags, cap):
    """A warning for bfloat16 forced on a CPU that would emulate it."""
    flags = cpu_flags() if flags is None else flags
    if flags is None or bfloat16_instructions(flags, isa_cap() if cap is None else cap):
        return ""
    return ("; this CPU (or its oneDNN cap) has no bfloat16 instructions, so it runs slower here than float32: "
            '"auto" or false would choose float32')


@contextlib.contextmanager
def policy_scope(precision):
    """Keras's global dtype policy set to ``precision``'s while inside.

    The previous policy comes back on leaving, so that later work in the
    process (another training, an evaluation) runs in the precision it asks for.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision.policy)
    try:
        yield precision
    finally:
        keras.mixed_precision.set_global_policy(previous)
