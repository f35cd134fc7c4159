"""The hidden tests: the code that awards a chapter assignment's automatic marks.

``grading/assignment.py`` writes the source of :func:`hidden_tests` into every graded cell
of an assignment, between nbgrader's ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``
markers, followed by one call carrying the exercise's hidden inputs and the reference
outputs on them (computed by ``grading/references.py`` when the assignment is made).
``nbgrader generate_assignment`` removes that region from the students' copy, and
``nbgrader autograde`` puts it back before it runs a submission.

What a graded cell trusts, and what it does not:

* It does not import attnlib or any checker, and it carries the expected outputs as
  numbers, so replacing or patching a checker, attnlib's references, or torch's functions
  (``torch.allclose``, tensor methods, a ``__torch_function__`` mode) earns nothing: an
  answer must produce the hidden numbers themselves.
* The verdict is computed with Python's own types only (``(0.5).__class__``, list indexing,
  float arithmetic, the C method ``TensorBase.tolist``, checked to be the real one), never
  with a name that an answer cell could rebind (``len``, ``abs``, ``isinstance``...).
* While the answer runs, ``sys.setprofile`` watches every call it makes: a call into attnlib
  (the library's implementation of the exercise, a checker or its reference), into torch's
  own implementation of what the exercise asks for, or to what would blind the watch
  (``sys.setprofile``, ``sys.settrace``, a thread, a process) fails the exercise with a
  message saying so. The watch checks that it is still on before and after the call.
* The answer must be a function written in the notebook. Its code, and that of the notebook
  functions it names, may not use the tools that read the running grader's frames or the
  notebook's history (``sys._getframe``, ``inspect``, ``gc``, ``get_ipython``, ``In``...).
* Every call gets ``time_limit`` seconds of CPU (a SIGPROF timer, which a loaded machine does
  not trip), so an endless loop costs a second, not nbgrader's per-cell timeout.

Nothing that runs inside the student's own Python process can stop code written to reverse
this particular grader (to rewrite the kernel's replies, say); such code is long and plain to
see in nbgrader's formgrader. A wrong, empty or broken answer gets one friendly line, never a
traceback: the cell raises an error whose ``_render_traceback_`` is that line, and nbgrader
scores a graded cell that raises as 0 and one that runs through as full marks.
"""


def hidden_tests(exercise, parts, time_limit=2.0):
    """Run the hidden tests of one graded cell; raise (0 marks) unless every part passes.

    Args:
        exercise: the exercise's label, for the messages.
        parts: one dict per graded function: ``name`` (the function the notebook defines),
            ``trials`` (a list of ``(args, expected)`` in the encoding of
            ``grading/references.py``), ``atol``, ``rtol``, and the torch functions that compute
            the exercise's answer: ``forbid_c`` (names of C functions) and ``forbid_py``
            (``[dotted path, qualified name]`` of Python functions).
        time_limit: seconds of CPU each call of the answer may take.
    """
    import io
    import signal
    import sys
    import warnings

    import torch

    # Python's own types, from literals: an answer cell can rebind `len` or `float`, not these.
    _type = (0).__class__.__class__
    _list, _tuple, _dict, _str = [].__class__, ().__class__, {}.__class__, "".__class__
    _float, _int, _bool = (0.5).__class__, (0).__class__, (0 == 0).__class__
    _function = (lambda: 0).__class__
    _code = (lambda: 0).__code__.__class__
    _tolist = torch._C.TensorBase.tolist
    _genuine = (_type(_tolist) is _type(_str.split) and _tolist.__name__ == "tolist"
                and _tolist.__objclass__.__name__ == "TensorBase"
                and _tolist.__objclass__.__module__ == "torch._C")
    _setprofile = sys.setprofile
    _globals = (lambda: 0).__globals__  # the notebook's namespace, where this cell runs

    class NotYet(Exception):
        """Shown as its message alone, in the notebook and in nbgrader's feedback."""

        def _render_traceback_(self):
            return ["\x1b[1;31m\u2718 " + self.args[0] + "\x1b[0m"]

    def fail(message):
        raise NotYet(f"{exercise}: {message}")

    if not _genuine:
        fail("the grader could not read results (torch's TensorBase.tolist was replaced); no marks.")

    # ---------------------------------------------------------------- decoding
    def floats(text):
        return [_float.fromhex(t) for t in _str.split(text)]

    def tensor(enc):
        _, dtype, shape, text = enc
        t = torch.tensor(floats(text), dtype=torch.float64).reshape(shape)
        return t.to(getattr(torch, dtype))

    def argument(enc):
        if enc[0] == "tensor":
            return tensor(enc)
        if enc[0] == "int":
            return enc[1]
        if enc[0] == "mha":  # a batch-first torch.nn.MultiheadAttention with given weights
            _, d_model, num_heads, state = enc
            mha = torch.nn.MultiheadAttention(d_model, num_heads, batch_first=True)
            with torch.no_grad():
                for key, value in state.items():
                    mha.get_parameter(key).copy_(tensor(value))
            return mha.eval()
        raise ValueError(enc[0])

    def shape_text(enc):
        if enc[0] == "tensor":
            return str(tuple(enc[2]))
        return "an nn.MultiheadAttention" if enc[0] == "mha" else str(enc[1])

    # ---------------------------------------------------------------- comparing
    def flatten(value, shape, out):
        """Append the floats of a nested list of ``shape`` to ``out``; False if it is not one."""
        if shape == []:
            if _type(value) is not _float:
                return False
            out.append(value)
            return True
        if _type(value) is not _list or _list.__len__(value) != shape[0]:
            return False
        rest = shape[1:]
        for item in value:
            if not flatten(item, rest, out):
                return False
        return True

    def shape_of(value):
        dims = []
        while _type(value) is _list:
            dims.append(_list.__len__(value))
            if _list.__len__(value) == 0:
                break
            value = value[0]
        return dims, value

    def describe(value):
        if value is None:
            return "None (is a `return` missing?)"
        name = _type(value).__name__
        return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"

    def compare_tensor(got, expected, atol, rtol, what):
        _, shape, text = expected
        shape = [d for d in shape]
        try:
            values = _tolist(got)
        except Exception:  # noqa: BLE001  (not a tensor)
            return f"{what} should be a torch.Tensor, not {describe(got)}."
        flat = []
        if not flatten(values, shape, flat):
            dims, leaf = shape_of(values)
            if dims != shape:
                return f"{what} has shape {tuple(dims)}; it should have shape {tuple(shape)}."
            return f"{what} holds {describe(leaf)} values; it should hold floating-point numbers."
        want = floats(text)
        worst, i = 0.0, 0
        for e in want:
            g = flat[i]
            i += 1
            d = g - e
            if d != d:  # NaN
                return f"{what} contains NaN or inf."
            if d < 0:
                d = -d
            size = e if e >= 0 else -e
            if not d <= atol + rtol * size:
                if d > worst:
                    worst = d
        if worst > 0:
            return f"{what} has the right shape but wrong values (largest difference {worst:.3g})."
        return None

    def compare(got, expected, atol, rtol):
        kind = expected[0]
        if kind == "tensor":
            return compare_tensor(got, expected, atol, rtol, "the result")
        if kind == "pair":
            if _type(got) is not _tuple and _type(got) is not _list:
                return f"the result should be a pair of tensors, not {describe(got)}."
            if _list.__len__(_list(got)) != 2:
                return f"the result should be a pair of two tensors, not {_list.__len__(_list(got))} items."
            for k in (0, 1):
                problem = compare_tensor(got[k], expected[1 + k], atol, rtol, ("the first", "the second")[k]
                                         + " tensor of the pair")
                if problem:
                    return problem
            return None
        if kind == "int":
            value = got
            if _type(got) is not _int and _type(got) is not _float and _type(got) is not _bool:
                try:
                    value = _tolist(got)  # a one-element tensor
                except Exception:  # noqa: BLE001
                    return f"the result should be an int, not {describe(got)}."
            if _type(value) is _float and _float.is_integer(value):
                value = _int(value)
            if _type(value) is not _int:
                return f"the result should be an int, not {describe(value)}."
            if value != expected[1]:
                return "the count is " + ("too high." if value > expected[1] else "too low.")
            return None
        raise ValueError(kind)

    # ---------------------------------------------------------------- what an answer may not use
    deny = {"_getframe": 1, "currentframe": 1, "getouterframes": 1, "f_back": 1, "f_locals": 1,
            "f_globals": 1, "f_code": 1, "tb_frame": 1, "__traceback__": 1, "gi_frame": 1, "cr_frame": 1,
            "co_consts": 1, "get_objects": 1, "get_referrers": 1, "get_referents": 1, "settrace": 1,
            "setprofile": 1, "gettrace": 1, "getprofile": 1, "get_ipython": 1, "_ih": 1, "In": 1, "Out": 1,
            "_oh": 1, "ctypes": 1, "gc": 1, "inspect": 1, "TorchFunctionMode": 1, "__torch_function__": 1,
            "__torch_dispatch__": 1, "set_custom_exc": 1}

    def is_library(path):
        path = _str.replace(path, "\\", "/")
        return ("/site-packages/" in path or "/dist-packages/" in path or "/lib/python" in path
                or "/attnlib/" in path or "/torch/" in path)

    def scan(fn, seen):
        """The first denied name that ``fn``'s code, or a notebook function it names, uses."""
        todo = [fn.__code__]
        while todo:
            code = todo.pop()
            if code in seen:
                continue
            seen.append(code)
            for name in code.co_names:
                if name in deny:
                    return name
                helper = _dict.get(fn.__globals__, name) if _type(fn.__globals__) is _dict else None
                if _type(helper) is _function and not is_library(helper.__code__.co_filename):
                    todo.append(helper.__code__)
            for const in code.co_consts:
                if _type(const) is _code:
                    todo.append(const)
        return None

    # ---------------------------------------------------------------- watching the calls
    evasive = {"setprofile": 1, "settrace": 1, "start_new_thread": 1, "start_joinable_thread": 1, "fork": 1,
               "fork_exec": 1,
               "posix_spawn": 1, "posix_spawnp": 1, "system": 1, "execv": 1, "execve": 1}
    try:
        (lambda: 0).__code__.co_qualname
        qualnames = True
    except AttributeError:  # Python 3.10
        qualnames = False

    def watcher(forbid_c, forbid_py, seen, alive, probe_code, own_code):
        """A profile function: records the forbidden calls the answer makes, and the probe's calls."""
        def watch(frame, event, arg):
            if event == "call":
                code = frame.f_code
                if code is probe_code:
                    alive.append(1)
                    return
                name = code.co_qualname if qualnames else code.co_name
                path = _str.replace(code.co_filename, "\\", "/")
                if "/attnlib/" in path:
                    caller = frame.f_back
                    if caller is None or "/attnlib/" not in _str.replace(caller.f_code.co_filename, "\\", "/"):
                        # a way into attnlib (not attnlib calling itself); a method call is more telling
                        # than a constructor, so entries without "__" come first in the message
                        where = path[_str.rfind(path, "/attnlib/") + 1:]
                        seen.append(("library" if "__" in name else "call", f"attnlib's `{name}` ({where})"))
                elif "/torch/" in path and (name in forbid_py or code in forbid_py.values()):
                    seen.append(("call", f"torch's `{name}`"))
            elif event == "c_call":
                name = arg.__name__
                if name in forbid_c:
                    seen.append(("call", f"torch's `{name}`"))
                elif name in evasive and frame.f_code is not own_code:
                    seen.append(("evasive", f"`{name}`"))
        return watch

    def python_functions(pairs):
        """``{qualname: code}`` of torch's Python functions given as ``[dotted path, qualname]``."""
        found = {}
        for path, qualname in pairs:
            obj = torch
            try:
                for attr in path.split(".")[1:]:
                    obj = getattr(obj, attr)
                found[qualname] = obj.__code__
            except AttributeError:
                found[qualname] = None
        return found

    # ---------------------------------------------------------------- one part
    class TimeUp(BaseException):
        pass

    def on_alarm(signum, frame):
        raise TimeUp()

    def timer(seconds):
        try:
            signal.setitimer(signal.ITIMER_PROF, seconds)
        except ValueError:  # not the main thread: no time limit
            pass

    def explain_missing(name):
        """Why ``name`` is not defined: a syntax error in the cell that defines it, or no answer."""
        history = _dict.get(_globals, "_ih") or []
        for source in reversed(history):
            if f"def {name}(" not in source:
                continue
            try:
                ip = _dict.get(_globals, "get_ipython")
                compile(ip().transform_cell(source) if ip else source, "<answer>", "exec")
            except SyntaxError as e:
                return (f"your cell above has a syntax error (line {e.lineno}: {e.msg}), so `{name}` "
                        "was never defined. Fix it and run the cell again.")
            except Exception:  # noqa: BLE001
                pass
            break
        return (f"this exercise is not answered yet: `{name}` is not defined (write it in the cell "
                "above and run that cell).")

    def call(fn, args, watch, probe, caught, out):
        """``fn(*args)`` watched, timed, with warnings and printing kept out of the cell's output."""
        try:
            old_handler = signal.signal(signal.SIGPROF, on_alarm)
        except ValueError:  # not the main thread
            old_handler = None
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, out
        result = None
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                timer(time_limit)
                _setprofile(watch)
                probe()
                try:
                    result = fn(*args)
                finally:
                    timer(0)
                    probe()
                    _setprofile(None)
        except BaseException as e:  # noqa: BLE001  (whatever the answer raised)
            caught.append(e)
        finally:
            _setprofile(None)
            timer(0)
            sys.stdout, sys.stderr = old_out, old_err
            if old_handler is not None:
                signal.signal(signal.SIGPROF, old_handler)
        return result

    def grade_part(part):
        name = part["name"]
        fn = _dict.get(_globals, name)
        if fn is None:
            return explain_missing(name)
        if _type(fn) is not _function:
            return f"`{name}` should be a function written with `def` in the cell above, not {describe(fn)}."
        if is_library(fn.__code__.co_filename):
            return (f"`{name}` is a library's function, not one written in this notebook: graded answers "
                    "must be your own code. No marks for this exercise.")
        denied = scan(fn, [])
        if denied is not None:
            return (f"`{name}` uses `{denied}`, which reads or rewires the running grader; that is not "
                    "allowed in a graded answer. No marks for this exercise.")
        forbid_c = {n: 1 for n in part["forbid_c"]}
        forbid_py = python_functions(part["forbid_py"])
        for args_enc, expected in part["trials"]:
            try:
                args = [argument(a) for a in args_enc]
            except Exception as e:  # noqa: BLE001  (torch was changed by the notebook)
                return (f"the grader could not build its test inputs ({_type(e).__name__}: {str(e)[:100]}): "
                        "has the notebook changed torch? No marks for this exercise.")
            seen, alive, caught = [], [], []

            def probe():
                return None

            watch = watcher(forbid_c, forbid_py, seen, alive, probe.__code__, call.__code__)
            got = call(fn, args, watch, probe, caught, io.StringIO())
            if alive != [1, 1]:
                return (f"`{name}` switched off the grader's watch of its calls (sys.setprofile): "
                        "no marks for this exercise.")
            evasions = [what for kind, what in seen if kind == "evasive"]
            if evasions != []:
                return (f"`{name}` calls {evasions[0]}, which would hide what it runs from the grader; that "
                        "is not allowed in a graded answer. No marks for this exercise.")
            calls = [what for kind, what in seen if kind == "call"] + [what for kind, what in seen
                                                                       if kind == "library"]
            if calls != []:
                return (f"`{name}` calls {calls[0]}, the library's own code for what the exercise asks you "
                        "to write. Graded answers may use torch's building blocks and your own functions, "
                        "not attnlib or torch's implementation of the exercise. No marks for this exercise.")
            if caught != []:
                e = caught[0]
                if _type(e) is TimeUp:
                    return (f"`{name}` did not finish within its time limit ({time_limit:g} s of CPU on "
                            f"inputs of shape {', '.join(shape_text(a) for a in args_enc)}; the reference "
                            "takes milliseconds): is there an endless loop?")
                if isinstance(e, NotImplementedError):
                    return (f"this exercise is not answered yet: `{name}` still raises NotImplementedError "
                            "(replace the stub under `# YOUR CODE HERE` with your code).")
                tb = e.__traceback__
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                line = f" (line {tb.tb_lineno})" if tb is not None else ""
                return f"`{name}` raised {_type(e).__name__}: {str(e)[:200]}{line}."
            problem = compare(got, expected, part["atol"], part["rtol"])
            if problem is not None:
                shapes = ", ".join(shape_text(a) for a in args_enc)
                return f"on hidden inputs ({shapes}) {problem} The check above names the likely mistake."
        return None

    problems = []
    for part in parts:
        try:
            problem = grade_part(part)
        except Exception as e:  # noqa: BLE001  (the notebook broke the grader: no marks, one line)
            problem = (f"the grader could not check `{part['name']}` ({_type(e).__name__}: {str(e)[:100]}); "
                       "has the notebook changed torch or Python's built-ins? No marks for this exercise.")
        if problem is not None:
            problems.append(problem)
    if problems != []:
        fail(" ".join(problems))
    names = " and ".join(f"`{p['name']}`" for p in parts)
    print(f"\u2714 {exercise}: {names} passed the hidden tests.")
