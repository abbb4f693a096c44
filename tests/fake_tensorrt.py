"""A fake `tensorrt` module for one TensorRT version, generated from the API table extracted
from TensorRT's binding sources (tests/data/tensorrt/tensorrt_api.json, see the README
there).

Only what the table lists for that version exists: a class, method, property or enum member
the table lacks raises AttributeError, as the real module would; enum members have the
real integer values. Every name the project touches is recorded in `trt.used` as (class,
name) pairs, which tests/test_trt_api_surface.py compares with the table.

Behaviour, just enough for the offline tests:
- the ONNX parser reads the graph's I/O (`parse_errors` makes it fail);
- the builder records what it was asked (`trt.builds`: flags, profiles, timing cache in
  and out ...) and "serialises" an engine as JSON naming the graph (`fail_build` makes it
  return None);
- the runtime deserialises that JSON (anything else: None, as a real runtime does for an
  engine of another GPU or version, or a damaged file);
- an execution context checks what real TensorRT checks (shapes inside the profile,
  addresses only for the engine's tensors, working memory set and large enough) and runs
  the graph with ONNX Runtime on the CPU, reading the inputs from and writing the outputs
  to the bound addresses (the tests bind CPU tensors);
- when `trt.capturing()` says a CUDA graph capture is under way, `execute_async_v3` records
  instead of running, and the context is frozen: any later change of its addresses, shapes
  or memory fails the test (a captured graph keeps what was bound at capture).
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np

API = json.loads((Path(__file__).parent / "data" / "tensorrt" / "tensorrt_api.json").read_text())["versions"]
# The versions the README claims (10.1 or newer, 10.x and 11.x), as far as the table has them.
SUPPORTED = tuple(v for v in API if tuple(map(int, v.split("."))) >= (10, 1))
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL", 3: "INT8", 2: "UINT8", 16: "BF16"}
TRT_TO_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
                "INT8": np.int8, "UINT8": np.uint8}
SCRATCH_BASE, SCRATCH_PER_ROW = 4096, 1024  # the fake's working memory: base + per batch row


class FrozenContextError(AssertionError):
    """A context a CUDA graph was captured from was changed afterwards."""


def _allowed(api: dict, cls: str) -> set[str]:
    """A class's names: its own, its bases', its nested enums and their exported values."""
    entry = api["classes"][cls]
    names = set(entry["attrs"]) | set(entry["enums"])
    for base in entry["bases"]:
        names |= _allowed(api, base)
    return names


class _BoundMeta(type):
    def __getattribute__(cls, name):
        if not name.startswith("_"):
            allowed = type.__getattribute__(cls, "_allowed")
            if name not in allowed:
                raise AttributeError(f"type object '{type.__getattribute__(cls, '_api')}' has no attribute "
                                     f"'{name}' in TensorRT {type.__getattribute__(cls, '_version')}")
            type.__getattribute__(cls, "_used").add((type.__getattribute__(cls, "_api"), name))
        return type.__getattribute__(cls, name)


class _Bound(metaclass=_BoundMeta):
    """Attribute access limited to the table's names for this class and version."""

    _api, _version, _allowed, _used = "?", "?", frozenset(), set()

    def __getattribute__(self, name):
        if not name.startswith("_"):
            cls = type(self)
            if name not in cls._allowed:
                raise AttributeError(f"'{cls._api}' object has no attribute '{name}' in TensorRT {cls._version}")
            cls._used.add((cls._api, name))
        return object.__getattribute__(self, name)


class _RecordingEnumType(enum.EnumType):
    def __getattribute__(cls, name):
        if not name.startswith("_"):
            members = type.__getattribute__(cls, "_member_map_")
            if name in members:
                used = type.__getattribute__(cls, "__dict__").get("_fake_used")
                if used is not None:
                    used.add((type.__getattribute__(cls, "_fake_api"), name))
        return super().__getattribute__(name)


class _TrtEnum(enum.IntEnum, metaclass=_RecordingEnumType):
    pass


def _make_enum(qual: str, members: dict, used: set):
    e = _TrtEnum(qual.split(".")[-1], {k: v for k, v in members.items()})
    type.__setattr__(e, "_fake_used", used)
    type.__setattr__(e, "_fake_api", qual)
    return e


class _Module(types.ModuleType):
    def __getattribute__(self, name):
        if not name.startswith("_"):
            d = object.__getattribute__(self, "__dict__")
            if name in d["_api_names"]:
                d["used"].add(("tensorrt", name))
            elif name not in d["_fake_names"]:
                raise AttributeError(f"module 'tensorrt' {d['__version__']} has no attribute '{name}'")
        return super().__getattribute__(name)


def _read(ptr: int, dtype, shape) -> np.ndarray:
    count = int(np.prod(shape))
    if count == 0:
        return np.zeros(shape, dtype)
    buf = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape).copy()


def _write(ptr: int, array: np.ndarray):
    array = np.ascontiguousarray(array)
    if array.nbytes:
        ctypes.memmove(ptr, array.ctypes.data, array.nbytes)


def make_fake_trt(version: str = "10.13") -> types.ModuleType:
    """A stand-in for `import tensorrt` of TensorRT `version` (a key of the API table)."""
    import onnx

    api = API[version]
    trt = _Module("tensorrt")
    used: set = set()
    trt.__dict__.update(__version__=api["tensorrt_version"], used=used, builds=[], parse_errors=[],
                        fail_build=False, capturing=lambda: False, executed=[], _sessions={},
                        shapes_set=[], contexts_alive=0)
    trt.__dict__["_fake_names"] = {"used", "builds", "parse_errors", "fail_build", "capturing", "executed",
                                   "shapes_set", "contexts_alive"}
    trt.__dict__["_api_names"] = set(api["classes"]) | set(api["module"]) | {e for e in api["enums"] if "." not in e}

    enums = {qual: _make_enum(qual, members, used) for qual, members in api["enums"].items()
             if None not in members.values()}
    for qual, e in enums.items():
        if "." not in qual:
            trt.__dict__[qual] = e

    def bound(api_name: str):
        """Class decorator: the table's names for `api_name`, nested enums attached."""
        def wrap(cls):
            made = _BoundMeta(api_name, (cls,), {"_api": api_name, "_version": api["tensorrt_version"],
                                                  "_allowed": frozenset(_allowed(api, api_name)), "_used": used})
            entry = api["classes"][api_name]
            for base in [api_name, *entry["bases"]]:
                for nested in api["classes"][base]["enums"]:
                    e = enums.get(f"{base}.{nested}")
                    if e is not None:
                        type.__setattr__(made, nested, e)
                        for member in e:  # export_values(): the members on the class too
                            if member.name in made._allowed:
                                type.__setattr__(made, member.name, member)
            trt.__dict__[api_name] = made
            return made
        return wrap

    @bound("Logger")
    class Logger(_Bound):
        def __init__(self, min_severity=None):
            self._min_severity = min_severity

    @bound("INetworkDefinition")
    class Network(_Bound):
        def __init__(self, flags):
            self._flags, self._source, self._io = flags, None, []

    @bound("ParserError")
    class ParserError(_Bound):
        def __init__(self, desc):
            self._desc = desc

        def desc(self):
            return self._desc

        def __str__(self):
            return f"In node -1 (importModel): {self._desc}"

    @bound("OnnxParser")
    class OnnxParser(_Bound):
        def __init__(self, network, logger):
            self._network, self._errors = network, []

        def parse_from_file(self, model):
            self._network._source = Path(model)
            if trt.__dict__["parse_errors"]:
                self._errors = [ParserError(e) for e in trt.__dict__["parse_errors"]]
                return False
            graph = onnx.load(model, load_external_data=False).graph
            for mode, values in (("INPUT", graph.input), ("OUTPUT", graph.output)):
                for v in values:
                    t = v.type.tensor_type
                    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                    self._network._io.append({"name": v.name, "mode": mode, "dtype": ONNX_TO_TRT[t.elem_type],
                                              "shape": shape})
            return True

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index]

    @bound("IHostMemory")
    class HostMemory(_Bound, bytes):
        @property
        def nbytes(self):
            return len(self)

    @bound("ITimingCache")
    class TimingCache(_Bound):
        def __init__(self, data):
            self._data = data

        def serialize(self):
            return HostMemory(self._data)

    @bound("IOptimizationProfile")
    class Profile(_Bound):
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's names)
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    @bound("IBuilderConfig")
    class Config(_Bound):
        def __init__(self):
            self._pools, self._cache, self._ignore_mismatch, self._profiles = {}, None, None, []
            self._preview = set()
            self._flags = {enums["BuilderFlag"].__members__["TF32"]}  # TensorRT's default

        def clear_flag(self, flag):
            self._flags.discard(flag)

        def set_flag(self, flag):
            self._flags.add(flag)

        def get_flag(self, flag):
            return flag in self._flags

        def set_preview_feature(self, feature, enable):
            (self._preview.add if enable else self._preview.discard)(feature)

        def set_memory_pool_limit(self, pool, pool_size):
            self._pools[pool] = pool_size

        def create_timing_cache(self, serialized_timing_cache):
            return TimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache, ignore_mismatch):
            self._cache, self._ignore_mismatch = cache, ignore_mismatch
            return True

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def get_timing_cache(self):
            return self._cache

    @bound("Builder")
    class Builder(_Bound):
        def __init__(self, logger):
            self._logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            cache_in = config._cache._data
            config._cache._data = cache_in + f"<timings of {network._source.name}>".encode()  # the build learns
            engine = None if trt.__dict__["fail_build"] else json.dumps(
                {"io": network._io, "source": str(network._source),
                 "profiles": [{n: list(map(list, v)) for n, v in p._shapes.items()} for p in config._profiles],
                 "preview": sorted(int(f) for f in config._preview)}).encode()
            trt.__dict__["builds"].append(dict(flags=network._flags, source=network._source, io=network._io,
                                   profiles=[p._shapes for p in config._profiles], pools=config._pools,
                                   cache_in=cache_in, cache_out=config._cache._data,
                                   ignore_mismatch=config._ignore_mismatch, engine=engine,
                                   preview={enums["PreviewFeature"](f).name for f in config._preview},
                                   tf32=enums["BuilderFlag"].__members__["TF32"] in config._flags))
            return None if engine is None else HostMemory(engine)

    @bound("IExecutionContext")
    class ExecutionContext(_Bound):
        def __init__(self, engine, strategy):
            self._engine, self._strategy = engine, strategy
            self._memory, self._shapes, self._addresses, self._frozen = None, {}, {}, False

        def _check_frozen(self, what):
            if self._frozen:
                raise FrozenContextError(f"{what} on a context a CUDA graph was captured from")

        def set_device_memory(self, memory, size):
            self._check_frozen("set_device_memory")
            self._memory = (memory, size)

        def set_input_shape(self, name, shape):
            self._check_frozen("set_input_shape")
            graph_shape = self._engine._io[name]["shape"]  # only -1 dims vary, inside the profile
            ok = len(shape) == len(graph_shape) and all(g in (-1, d) for g, d in zip(graph_shape, shape))
            bounds = self._engine._profile.get(name)
            if ok and bounds is not None:
                low, _, high = bounds
                ok = all(lo <= d <= hi for lo, d, hi in zip(low, shape, high))
            trt.__dict__["shapes_set"].append((name, tuple(shape), ok))
            if ok:
                self._shapes[name] = tuple(shape)
            return ok

        def _shape(self, name):
            io = self._engine._io[name]
            if io["mode"] == "INPUT":
                return self._shapes.get(name, tuple(io["shape"]))
            return tuple(self._engine._output_shape(name, self._shapes))

        def get_tensor_shape(self, name):
            return self._shape(name)

        def _needed(self):
            rows = max([s[0] for s in self._shapes.values()] or [1])
            return SCRATCH_BASE + SCRATCH_PER_ROW * rows

        def update_device_memory_size_for_shapes(self):
            # Without RUNTIME_ACTIVATION_RESIZE_10_10 the working memory may stay at the
            # profile maximum (it depends on the plan): the fake assumes the worst.
            resize = enums["PreviewFeature"].__members__.get("RUNTIME_ACTIVATION_RESIZE_10_10")
            if resize is not None and int(resize) in self._engine._preview:
                return self._needed()
            rows = max([hi[0] for _, _, hi in self._engine._profile.values()] or [1])
            return max(self._needed(), SCRATCH_BASE + SCRATCH_PER_ROW * rows)

        def set_tensor_address(self, name, memory):
            self._check_frozen("set_tensor_address")
            if name not in self._engine._io:
                return False
            self._addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle):
            io = self._engine._io
            missing = [n for n in io if n not in self._addresses]
            dynamic = [n for n, t in io.items() if t["mode"] == "INPUT" and -1 in t["shape"] and n not in self._shapes]
            if missing or dynamic or self._memory is None:
                return False  # TensorRT refuses: unbound tensors, unset shapes or memory
            if self._memory[1] < self._needed():
                return False  # working memory too small for these shapes
            if trt.__dict__["capturing"]():
                self._frozen = True
                trt.__dict__["executed"].append(("captured", self))
                return True
            inputs = {n: _read(self._addresses[n], TRT_TO_NUMPY[t["dtype"]], self._shape(n))
                      for n, t in io.items() if t["mode"] == "INPUT"}
            names = [n for n, t in io.items() if t["mode"] == "OUTPUT"]
            for name, value in zip(names, self._engine._session().run(names, inputs)):
                want = tuple(self._shape(name))
                assert value.shape == want, (name, value.shape, want)
                _write(self._addresses[name], value.astype(TRT_TO_NUMPY[io[name]["dtype"]]))
            trt.__dict__["executed"].append(("eager", self))
            return True

    @bound("ICudaEngine")
    class Engine(_Bound):
        def __init__(self, io, source, profiles=(), preview=()):
            self._io, self._source = {t["name"]: t for t in io}, source
            self._profile = profiles[0] if profiles else {}  # input -> (min, opt, max)
            self._preview = set(preview)

        def _session(self):
            import onnxruntime as ort

            if self._source not in trt._sessions:
                trt._sessions[self._source] = ort.InferenceSession(self._source, providers=["CPUExecutionProvider"])
            return trt._sessions[self._source]

        def _output_shape(self, name, input_shapes):
            batch = [s[0] for n, s in input_shapes.items()]  # outputs: the graph's dims, batch from inputs
            shape = list(self._io[name]["shape"])
            if shape and shape[0] == -1:
                shape[0] = batch[0] if batch else -1
            return shape

        @property
        def num_io_tensors(self):
            return len(self._io)

        def get_tensor_name(self, index):
            return list(self._io)[index]

        def get_tensor_mode(self, name):
            return enums["TensorIOMode"].__members__[self._io[name]["mode"]]

        def get_tensor_dtype(self, name):
            return enums["DataType"].__members__[self._io[name]["dtype"]]

        def get_tensor_shape(self, name):
            return tuple(self._io[name]["shape"])

        @property
        def device_memory_size(self):
            return SCRATCH_BASE + SCRATCH_PER_ROW * 64

        @property
        def device_memory_size_v2(self):
            return SCRATCH_BASE + SCRATCH_PER_ROW * 64

        def create_execution_context(self, strategy=None):
            return ExecutionContext(self, strategy)

    @bound("Runtime")
    class Runtime(_Bound):
        def __init__(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            try:  # a real runtime returns None for another GPU / version or a damaged file
                blob = json.loads(bytes(serialized_engine))
                return Engine(blob["io"], blob["source"], blob.get("profiles", ()), blob.get("preview", ()))
            except (ValueError, KeyError, TypeError):
                return None

    return trt
