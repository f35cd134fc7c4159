"""The coursework loop of teachers.md, end to end, with the real nbgrader (issue 30 and its review).

For every chapter with an automatically graded exercise, the assignment is built
(``grading/assignment.py``), released (``nbgrader generate_assignment``), and submissions
are autograded by ``nbgrader autograde``, with the course's configuration: the marks are
decided by ``grading/judge.py`` in nbgrader's own process. Every auto-graded function meets
every kind of answer:

* ``right``: the chapter's own solution: every mark;
* ``noisy``: the solution, decorated with ``@torch.no_grad()``, in a cell that binds globals
  named ``In`` and ``Out``, writing to stdout and stderr and raising warnings (torch's own,
  from a softmax without ``dim``): every mark, and nothing for the teacher to look at;
* ``empty``: the stub as released; ``wrong``: a typical mistake that runs;
* ``shortcut``: an answer that calls attnlib, or torch's own implementation of the exercise
  (``scaled_dot_product_attention``; the ``nn.MultiheadAttention`` it is given);
* ``tamper``: issue 30's one-liner (the checker replaced in its module, ``torch.allclose``
  too), the review's two-liner (``set_custom_exc`` and a ``post_run_cell`` event that clears
  the error), a function that reads the grader's frames and the input history ``_ih`` for
  the expected numbers and prints numbers in the hidden tests' format, and the check cell
  itself emptied (nbgrader restores it);
* ``syntax``: a syntax error; ``loop``: a function that never returns, even when stopped
  (``try: while True: pass`` / ``except BaseException: pass`` in a loop);

and in chapter 3 also ``fake`` (garbage, and an IPython event that prints a line in the
hidden tests' format after every cell) and ``disguised`` (right numbers through ``eval``, the
graded cell deleted: nbgrader puts it back; every mark, flagged for the teacher). Kinds are
spread over the submissions (a Latin square), so that one submission mixes them, as a real
one does: a syntax error or tampering in one exercise must leave the others graded. The
test checks each score, each message (one line, no traceback), which grades are flagged for
the teacher ("needs manual grade"), nbgrader's log (no warning but the expected ones), the
autograding time per submission, the hand-marking sheet (written answers with their code,
flagged marks) and its errors, the feedback (no hidden tests, no hidden numbers) and the
exported CSV.

``GRADING_CHAPTERS=01_activation,03_output_projection`` limits it to some chapters.
"""
from __future__ import annotations

import csv
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NBGRADER = BIN / "nbgrader"
sys.path[:0] = [str(ROOT / "grading"), str(ROOT / "scripts")]
import assignment  # noqa: E402
import student_edition as se  # noqa: E402

# --------------------------------------------------------------------------------------
# The answers, per checker (the exercise), as function bodies; the function's name and
# arguments come from the released stub.
# --------------------------------------------------------------------------------------
SYNTAX = "return torch.zeros(1) +"
LOOP = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
PEEK = """import sys
frame = sys._getframe(1)
while frame is not None:  # the grader's frames: anything that looks like the expected result
    for key in ("expected", "want", "reference", "references"):
        if key in frame.f_locals:
            return frame.f_locals[key]
    frame = frame.f_back
for source in globals()["_i" + "h"]:  # the notebook's history, the hidden tests' source included
    found = [line for line in source.splitlines() if "expected" in line or "0x1." in line]
"""
NOISE = """print("debugging", {args})
print("debugging on stderr", file=sys.stderr)
warnings.warn("a warning of my own")
torch.nn.functional.softmax(torch.zeros(2, 3))  # torch warns: no dim
"""

ANSWERS = {
    "check_attention": {
        "wrong": ("return torch.softmax(Q @ K.transpose(-2, -1), dim=-1) @ V", "wrong values"),
        "shortcut": ("from attnlib import attention\nreturn attention(Q, K, V)", "uses attnlib"),
        "shortcut-torch": ("return torch.nn.functional.scaled_dot_product_attention(Q, K, V)",
                           "torch's `scaled_dot_product_attention`"),
        "tamper": ("return None", "not None"),
    },
    "check_rank1_residual": {
        "wrong": ("return (X - X.mean(-1, keepdim=True)).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1)",
                  "wrong values"),
        "shortcut": ("from attnlib.probes import rank1_residual\nreturn rank1_residual(X)",
                     "uses attnlib"),
        "tamper": ("return None", "not None"),
    },
    "check_split_heads": {
        "wrong": ("b, n, f = x.shape\nreturn x.reshape(b, num_heads, n, f // num_heads)", "wrong values"),
        "shortcut": ("import attnlib\nreturn attnlib.split_heads(x, num_heads)", "uses attnlib"),
        "tamper": ("return x", "shape"),
    },
    "check_merge_heads": {
        "wrong": ("b, h, n, d = heads.shape\nreturn heads.reshape(b, n, h * d)", "wrong values"),
        "shortcut": ("from attnlib.mha import merge_heads\nreturn merge_heads(heads)", "uses attnlib"),
        "tamper": ("return heads.sum()", "shape"),
    },
    "check_mha_from_heads": {
        "wrong": ("d, h = mha.embed_dim, mha.num_heads\nd_k = d // h\nW, b = mha.in_proj_weight, mha.in_proj_bias\n"
                  "heads = []\nfor i in range(h):\n"
                  "    q, k, v = (x @ W[j * d + i * d_k:j * d + (i + 1) * d_k].T + b[j * d + i * d_k:j * d + (i + 1) * d_k]"
                  " for j in range(3))\n"
                  "    heads.append(torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v)  # not scaled\n"
                  "return mha.out_proj(torch.cat(heads, dim=-1))", "wrong values"),
        "shortcut": ("from attnlib import MultiHeadAttention\n"
                     "m = MultiHeadAttention(mha.embed_dim, mha.num_heads)\nd = mha.embed_dim\n"
                     "W, b = mha.in_proj_weight, mha.in_proj_bias\n"
                     "for k, (W_k, b_k) in enumerate([(m.W_Q, m.b_Q), (m.W_K, m.b_K), (m.W_V, m.b_V)]):\n"
                     "    W_k.data, b_k.data = W[k * d:(k + 1) * d].T.clone(), b[k * d:(k + 1) * d].clone()\n"
                     "m.W_O.data, m.b_O.data = mha.out_proj.weight.T.clone(), mha.out_proj.bias.clone()\n"
                     "return m(x)", "uses attnlib"),
        "shortcut-torch": ("return mha(x, x, x, need_weights=False)[0]", "runs the module it is given"),
        "tamper": ("return torch.zeros_like(x)", "wrong values"),
    },
    "check_parameter_count": {
        "wrong": ("return 4 * d_model * d_model + 4 * d_model  # K/V heads ignored", "too high"),
        "shortcut": ("from attnlib.counting import mha_parameter_count\n"
                     "return mha_parameter_count(d_model, num_heads, num_kv_heads=num_kv_heads)['total']",
                     "uses attnlib"),
        "tamper": ("return 0", "too low"),
    },
    "check_gauge": {
        "wrong": ("return W_V_h @ M, M @ W_O_h  # M where its inverse belongs", "wrong values"),
        "shortcut": ("from attnlib import MultiHeadAttention\nfrom attnlib.circuits import apply_gauge\n"
                     "d_model, d_k = W_V_h.shape\nh = d_model // d_k\n"
                     "mha = MultiHeadAttention(d_model, h, bias=False).double()\n"
                     "mha.W_V.data[:, :d_k], mha.W_O.data[:d_k] = W_V_h, W_O_h\n"
                     "Ms = torch.eye(d_k, dtype=M.dtype).repeat(h, 1, 1)\nMs[0] = M\n"
                     "g = apply_gauge(mha, Ms)\nreturn g.W_V[:, :d_k].detach(), g.W_O[:d_k].detach()",
                     "uses attnlib"),
        "tamper": ("return None", "not None"),
    },
    "check_fuse": {
        "wrong": ("return W_O @ W_1, b_1  # b_O forgotten", "wrong values"),
        "shortcut": ("from attnlib import TransformerBlock\nfrom attnlib.circuits import FusedAttentionMLP\n"
                     "d, d_ff = W_1.shape\n"
                     "block = TransformerBlock(d, 1, d_ff, norm='none', residual=False).double()\n"
                     "block.attn.W_O.data, block.attn.b_O.data = W_O.clone(), b_O.clone()\n"
                     "block.mlp.linear1.weight.data, block.mlp.linear1.bias.data = W_1.T.clone(), b_1.clone()\n"
                     "fused = FusedAttentionMLP.from_block(block)\n"
                     "return fused.W_fused.detach(), fused.b_fused.detach()", "uses attnlib"),
        "tamper": ("return W_O, b_O", "shape"),
    },
    "check_relu_attention": {
        "wrong": ("return torch.relu(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])) @ V  # not divided by n",
                  "wrong values"),
        "shortcut": ("import attnlib\nreturn attnlib.attention(Q, K, V, normaliser='relu')", "uses attnlib"),
        "tamper": ("return V", "wrong values"),
    },
    "check_sigmoid_attention": {
        "wrong": ("return torch.sigmoid(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])) @ V  # no -log n bias",
                  "wrong values"),
        "shortcut": ("from attnlib.sdpa import attention\nreturn attention(Q, K, V, normaliser='sigmoid')",
                     "uses attnlib"),
        "tamper": ("return None", "not None"),
    },
    "check_linear_recurrence": {
        "wrong": ("phi_q, phi_k = F.elu(Q) + 1, F.elu(K) + 1\nS = Q.new_zeros(Q.shape[0], Q.shape[2], V.shape[2])\n"
                  "out = []\nfor i in range(Q.shape[1]):\n"
                  "    S = S + phi_k[:, i, :, None] * V[:, i, None, :]\n"
                  "    out.append((phi_q[:, i, None, :] @ S)[:, 0])  # no normaliser\n"
                  "return torch.stack(out, dim=1)", "wrong values"),
        "shortcut": ("from attnlib.alternatives import linear_attention_recurrent\n"
                     "return linear_attention_recurrent(Q, K, V)", "uses attnlib"),
        "tamper": ("return torch.zeros(1)", "shape"),
    },
    "check_attention_pooling": {
        "wrong": ("return x.mean(dim=1)  # mean pooling", "wrong values"),
        "shortcut": ("from attnlib.pooling import AttentionPooling\npool = AttentionPooling(x.shape[-1])\n"
                     "pool.query.data = q\nreturn pool(x)", "uses attnlib"),
        "shortcut-torch": ("query = q.expand(x.shape[0], 1, -1)\n"
                           "return torch.nn.functional.scaled_dot_product_attention(query, x, x).squeeze(1)",
                           "torch's `scaled_dot_product_attention`"),
        "tamper": ("return x.sum(1)", "wrong values"),
    },
}
#: What each kind of answer must say in its graded cell (besides the ANSWERS' own fragments).
SAYS = {"right": "right on all", "noisy": "right on all", "disguised": "right on all",
        "empty": "not answered yet", "syntax": "syntax error", "loop": "did not finish",
        "fake": "could not read what"}
#: The kinds that earn the marks.
EARN = {"right", "noisy", "disguised"}
#: The kinds whose code reaches for the notebook's machinery: every graded cell after them is flagged.
MACHINERY = {"tamper", "fake", "disguised"}
KINDS = ["right", "noisy", "empty", "wrong", "shortcut", "tamper", "syntax", "loop"]
#: Chapter 3 also checks fake numbers printed after every cell, and a disguised shortcut whose
#: graded cell the student deleted.
EXTRA = {"check_gauge": ["fake", "disguised"], "check_fuse": ["fake", "disguised"]}
TORCH_SHORTCUT = {"check_attention", "check_mha_from_heads", "check_attention_pooling"}


def kinds_for(checker):
    return KINDS + EXTRA.get(checker, [])


def fake_line(name):
    """A line in the format of the hidden tests' output, with made-up numbers."""
    trial = {"value": {"tensor": [1], "values": [0.0], "dtype": "torch.float32"}, "module_calls": 0}
    return f"hidden-outputs {name} " + json.dumps({"trials": [trial] * 3})


def prelude(kind, checker, module, name):
    """What an answer cell of ``kind`` runs before its function."""
    if kind == "tamper":
        return (f"import attnlib.checks.{module} as m; m.{checker} = lambda *a, **k: print('passed')\n"
                "import torch; torch.allclose = lambda *a, **k: True\n"
                "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                "get_ipython().events.register('post_run_cell', lambda r: setattr(r, 'error_in_exec', None))\n")
    if kind == "fake":
        return f"get_ipython().events.register('post_run_cell', lambda r: print({fake_line(name)!r}))\n"
    if kind == "noisy":
        return "import sys, warnings\nIn = 'my input'\nOut = []\n"
    return ""


def body(kind, checker, name, solution, args):
    if kind == "right":
        return solution
    if kind == "noisy":
        return NOISE.format(args=args) + solution
    if kind == "disguised":
        return {"check_gauge": 'return eval("W_V_h @ M"), torch.linalg.solve(M, W_O_h)',
                "check_fuse": 'return eval("W_O @ W_1"), b_O @ W_1 + b_1'}[checker]
    if kind == "syntax":
        return SYNTAX
    if kind == "loop":
        return LOOP
    if kind == "tamper":
        return PEEK + f"print({fake_line(name)!r})\n" + ANSWERS[checker]["tamper"][0]
    if kind == "fake":
        return ANSWERS[checker]["tamper"][0]
    if kind == "shortcut" and checker in TORCH_SHORTCUT:
        return ANSWERS[checker]["shortcut-torch"][0]
    return ANSWERS[checker][kind][0]


def message(kind, checker):
    if kind in SAYS:
        return SAYS[kind]
    if kind == "tamper":
        return ANSWERS[checker]["tamper"][1]
    return ANSWERS[checker]["shortcut-torch" if kind == "shortcut" and checker in TORCH_SHORTCUT else kind][1]


# --------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------
STUB = re.compile(r"^(?P<indent>[ \t]*)# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\)", re.M)


def functions(source_nb):
    """``{function: (checker, checker module, graded cell's grade_id, points)}`` of an assignment source."""
    found = {}
    for cell in source_nb.cells:
        nbg = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and nbg.get("grade") and "BEGIN HIDDEN TESTS" in cell.source:
            for module, checker in re.findall(r"^from attnlib\.checks\.(\w+) import (check_\w+)", cell.source, flags=re.M):
                name = re.search(rf"^self_check\({checker}, '(\w+)'\)", cell.source, flags=re.M).group(1)
                found[name] = (checker, module, nbg["grade_id"], nbg["points"])
    return found


def solution_bodies(source_nb):
    """``{function: its solution lines}``, from the source's BEGIN/END SOLUTION markers."""
    bodies = {}
    for cell in source_nb.cells:
        lines = cell.source.split("\n")
        for b, e in se.markers(cell.source):
            name = next(m.group(1) for line in reversed(lines[:b]) for m in [re.match(r"\s*def (\w+)\(", line)] if m)
            indent = len(lines[b]) - len(lines[b].lstrip())
            bodies[name] = "\n".join(line[indent:] for line in lines[b + 1:e])
    return bodies


def answer_cell(release_source, kinds, source_nb, fns):
    """The released cell's stubs filled in with each function's kind of answer."""
    bodies = solution_bodies(source_nb)
    top = ""

    def fill(m):
        nonlocal top
        name, args = re.findall(r"def (\w+)\(([^)]*)\)", release_source[:m.start()])[-1]
        if name not in fns:  # code that is marked by hand (with a written answer): the solution
            return "\n".join(m.group("indent") + line for line in bodies[name].split("\n"))
        kind = kinds.get(name, "right")
        if kind == "empty":
            return m.group(0)
        checker, module = fns[name][0], fns[name][1]
        top += prelude(kind, checker, module, name)
        text = body(kind, checker, name, bodies[name], args)
        return "\n".join(m.group("indent") + line for line in text.split("\n"))

    filled = STUB.sub(fill, release_source)
    for name, kind in kinds.items():
        if kind == "noisy":
            filled = filled.replace(f"def {name}(", f"@torch.no_grad()\ndef {name}(")
    return top + filled


def plan(fns):
    """One dict ``{function: kind}`` per submission: every function meets each of its kinds once."""
    names = sorted(fns)
    count = max(len(kinds_for(fns[f][0])) for f in names)
    return [{f: kinds_for(fns[f][0])[(i + j) % len(kinds_for(fns[f][0]))] for i, f in enumerate(names)}
            for j in range(count)]


def same_cell(fn, release_nb):
    """The functions defined in the same answer cell as ``fn``."""
    for cell in release_nb.cells:
        names = re.findall(r"def (\w+)\(", cell.source)
        if fn in names:
            return names
    return [fn]


def expected(fn, kinds, fns, release_nb):
    """(score, message fragment) that the graded cell of ``fn`` must show."""
    if any(kinds.get(n) == "syntax" for n in same_cell(fn, release_nb)):
        return 0, SAYS["syntax"]
    kind = kinds[fn]
    return (fns[fn][3] if kind in EARN else 0), message(kind, fns[fn][0])


def flagged(grade_id, kinds, fns, release_nb):
    """Whether the graded cell ``grade_id`` is for the teacher to look at: code that reaches for the
    notebook's machinery runs before it (a cell that does not parse runs nothing)."""
    order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in release_nb.cells]
    position = order.index(grade_id)
    for name, kind in kinds.items():
        if kind in MACHINERY and not any(kinds.get(n) == "syntax" for n in same_cell(name, release_nb)):
            answer = next(i for i, c in enumerate(release_nb.cells) if f"def {name}(" in c.source)
            if answer < position:
                return True
    return False


# --------------------------------------------------------------------------------------
# The loop, once for every chapter
# --------------------------------------------------------------------------------------
def graded_chapters():
    wanted = [c for c in os.environ.get("GRADING_CHAPTERS", "").split(",") if c]
    out = []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        exercises = se.scan(nbformat.read(path, as_version=4))[0]
        if any(e.checker_cells for e in exercises) and (not wanted or path.stem in wanted):
            out.append(path.stem)
    return out


CHAPTERS = graded_chapters()


def run(args, cwd, log=None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if log is not None:
        log.append(f"$ {' '.join(str(a) for a in args)}\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def submission(release, source, kinds, fns, j):
    """One student's notebook: the release with every function answered by its kind."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        if cell.cell_type == "code" and STUB.search(cell.source):
            cell.source = answer_cell(cell.source, kinds, source, fns)
        nbg = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and nbg.get("solution") and j % 2 == 0:
            cell.source = f"My answer to {nbg['grade_id']}, in my own words."
        if nbg.get("grade") and cell.cell_type == "code" and any(
                kinds[f] == "tamper" and fns[f][2] == nbg["grade_id"] for f in kinds):
            cell.source = "print('passed')  # the check cell itself, emptied"  # nbgrader restores it
    deleted = {fns[f][2] for f in kinds if kinds[f] == "disguised"}
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in deleted]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    if not NBGRADER.exists():
        pytest.skip("nbgrader is not installed (requirements-dev.txt installs it)")
    course = tmp_path_factory.mktemp("course")
    assignment.new_course(course)
    log, results, notes = [], {}, []
    for chapter in CHAPTERS:
        assignment.write_source(ROOT / "chapters" / f"{chapter}.ipynb", course, notes=notes)
    run([NBGRADER, "generate_assignment", "*"], course, log)  # every chapter at once
    for chapter in CHAPTERS:
        source = nbformat.read(course / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        release = nbformat.read(course / "release" / chapter / f"{chapter}.ipynb", as_version=4)
        fns = functions(source)
        submissions = plan(fns)
        for j, kinds in enumerate(submissions):
            out = course / "submitted" / f"student{j}" / chapter
            out.mkdir(parents=True)
            nbformat.write(submission(release, source, kinds, fns, j), out / f"{chapter}.ipynb")
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        run([NBGRADER, "autograde", chapter], course, log)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        results[chapter] = {"fns": fns, "submissions": submissions, "release": release,
                            "wall": wall / len(submissions), "cpu": cpu / len(submissions)}
    return course, results, "\n".join(log)


def graded_outputs(course, chapter, student):
    """``{grade_id: text of the cell's outputs}`` and ``{grade_id: its outputs}`` of the autograded notebook."""
    nb = nbformat.read(course / "autograded" / student / chapter / f"{chapter}.ipynb", as_version=4)
    texts, outputs = {}, {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        text = []
        for o in cell.outputs:
            text += o.traceback if o.output_type == "error" else \
                [o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))]
        texts[grade_id] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(text))
        outputs[grade_id] = cell.outputs
    return texts, outputs


def test_every_answer_gets_the_marks_a_teacher_wants(course):
    from nbgrader.api import Gradebook

    path, results, _ = course
    wrong, table = [], []
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        for chapter, r in results.items():
            for j, kinds in enumerate(r["submissions"]):
                student = f"student{j}"
                texts, _ = graded_outputs(path, chapter, student)
                for fn, kind in sorted(kinds.items()):
                    checker, _, grade_id, points = r["fns"][fn]
                    grade = gb.find_grade(grade_id, chapter, chapter, student)
                    want, says = expected(fn, kinds, r["fns"], r["release"])
                    look = flagged(grade_id, kinds, r["fns"], r["release"])
                    table.append(f"  {chapter:24s} {fn:22s} {kind:10s} {grade.score:g} / {points}"
                                 + ("   flagged for the teacher" if grade.needs_manual_grade else ""))
                    text = texts.get(grade_id, "")
                    if grade.score != want:
                        wrong.append(f"{chapter} {student} {fn} ({kind}): {grade.score} marks, expected {want}\n{text}")
                    if says not in text:
                        wrong.append(f"{chapter} {student} {fn} ({kind}): does not say {says!r}:\n{text}")
                    if grade.needs_manual_grade != look or ("For your teacher" in text) != look:
                        wrong.append(f"{chapter} {student} {fn} ({kind}): flagged {grade.needs_manual_grade}, "
                                     f"expected {look}:\n{text}")
                    if kind == "noisy" and "your function printed" not in text:
                        wrong.append(f"{chapter} {student} {fn}: the self-check hides what the function printed")
    print("\nautograded score per chapter, function and kind of answer:\n" + "\n".join(table))
    assert not wrong, "\n\n".join(wrong)


def test_messages_are_one_line_never_a_traceback(course):
    """A graded cell's error is the judge's one line; no stderr, no value, no hidden numbers."""
    path, results, _ = course
    bad = []
    for chapter, r in results.items():
        for j in range(len(r["submissions"])):
            _, outputs = graded_outputs(path, chapter, f"student{j}")
            for grade_id in {f[2] for f in r["fns"].values()}:
                for o in outputs.get(grade_id, []):
                    where = f"{chapter} student{j} {grade_id}"
                    if o.output_type == "error" and (len(o.traceback) != 1 or o.ename != "NoMarks"):
                        bad.append(f"{where}: {o.ename}\n" + "\n".join(o.traceback)[:1500])
                    if o.output_type == "execute_result" or (o.output_type == "stream" and o.name == "stderr"):
                        bad.append(f"{where}: {o.output_type} {o.get('name', '')}")
                    if o.output_type == "stream" and re.search(r"^hidden-outputs ", o.text, flags=re.M):
                        bad.append(f"{where}: the hidden tests' numbers are left in the output")
    assert not bad, "\n\n".join(bad)


def test_released_notebooks_hold_no_answers(course):
    """What students receive: stubs, empty answer cells, the self-checks, what each function may
    use; no solution, no reference answer, no hidden test or seed, no output."""
    path, results, _ = course
    for chapter, r in results.items():
        source = nbformat.read(path / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        release = r["release"]
        text = "\n".join(c.source for c in release.cells)
        for marker in ("BEGIN HIDDEN TESTS", "print_outputs", "seed=", "inputs_for_", "BEGIN SOLUTION"):
            assert marker not in text, f"{chapter}: {marker} in the students' copy"
        checked = [e for e in se.scan(nbformat.read(ROOT / "chapters" / f"{chapter}.ipynb", as_version=4))[0]
                   if e.checker_cells]
        assert text.count("*Marked automatically:*") == len(checked), chapter
        outside = "\n".join(c.source for c in source.cells if "BEGIN SOLUTION" not in c.source
                            and not c.metadata.get("nbgrader", {}).get("solution"))
        for body_ in solution_bodies(source).values():
            for line in body_.split("\n"):
                assert len(line.strip()) < 20 or line.strip() in outside or line.strip() not in text, \
                    f"{chapter}: solution line in the students' copy: {line}"
        for cell in release.cells:
            nbg = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "markdown" and nbg.get("solution"):
                assert cell.source.strip() == "YOUR ANSWER HERE", f"{chapter}: {nbg['grade_id']} is not blank"
            assert not cell.get("outputs")


def test_autograding_one_submission_is_fast(course):
    _, results, _ = course
    print("\nautograding, per submission (nbgrader autograde over all of a chapter's submissions):")
    for chapter, r in results.items():
        print(f"  {chapter:26s} {r['wall']:5.1f} s wall, {r['cpu']:5.1f} s CPU "
              f"({len(r['submissions'])} submissions)")
    slow = {c: round(r["cpu"], 1) for c, r in results.items() if r["cpu"] > 30}
    assert not slow, f"autograding takes more than 30 s of CPU per submission: {slow}"


KERNEL_SHUTDOWN_RACE = re.compile(
    r"ERROR:tornado\.general:Uncaught exception in ZMQStream callback\n"
    r"Traceback \(most recent call last\):\n"
    r"(?:  .*\n)*?"  # the frames, indented
    r"  File \"[^\"]*ipykernel/kernelbase\.py\", line \d+, in _publish_status_and_flush\n"
    r"(?:  .*\n)*?"
    r"zmq\.error\.ZMQError: Socket operation on non-socket\n")


def without_kernel_shutdown_race(log):
    """``log`` without ipykernel's shutdown race, which nbgrader's kernels print now and then.

    When a kernel is shut down, its control handler publishes "idle" while the IOPub socket is
    being closed, and tornado logs the ENOTSOCK error as an uncaught exception (ipykernel's
    pull request 1518 catches it in ``_really_send`` but not in ``schedule``, where CI met it
    with ipykernel 7.4.0). It comes after the notebook has been graded and changes no mark. Only
    that traceback is removed: its frames must pass through ``_publish_status_and_flush`` and
    end in that ZMQError; any other traceback stays and fails the test below.
    """
    return KERNEL_SHUTDOWN_RACE.sub("", log)


def test_the_kernel_shutdown_race_is_the_only_traceback_forgiven():
    race = ("ERROR:tornado.general:Uncaught exception in ZMQStream callback\n"
            "Traceback (most recent call last):\n"
            '  File "/v/zmq/eventloop/zmqstream.py", line 585, in _log_error\n'
            "    f.result()\n"
            '  File "/v/ipykernel/kernelbase.py", line 718, in _publish_status_and_flush\n'
            "    self._publish_status(status, channel, parent)\n"
            '  File "zmq/backend/cython/_zmq.py", line 190, in zmq.backend.cython._zmq._check_rc\n'
            "zmq.error.ZMQError: Socket operation on non-socket\n")
    assert without_kernel_shutdown_race(f"a\n{race}b\n") == "a\nb\n"
    other = race.replace("Socket operation on non-socket", "Resource temporarily unavailable")
    assert "Traceback" in without_kernel_shutdown_race(f"a\n{other}b\n")
    elsewhere = race.replace("_publish_status_and_flush", "execute_request")
    assert "Traceback" in without_kernel_shutdown_race(f"a\n{elsewhere}b\n")


def test_nbgrader_says_nothing_a_teacher_should_not_see(course):
    """No warning from generate_assignment or autograde but those a teacher must see: a student
    changed a locked check cell (nbgrader restores it), deleted a graded cell (nbgrader puts it
    back), or wrote code that the judge flags for a look."""
    path, results, log = course
    log = without_kernel_shutdown_race(log)
    for noise in ("cannot be converted", "does not understand", "is not absolute", "code cell inside a solution",
                  "Alternative text", "Traceback", "without encryption"):
        assert noise not in log, f"nbgrader's output says {noise!r}:\n{log[log.find(noise) - 2000:][:3000]}"
    expected = []
    for chapter, r in results.items():
        for j, kinds in enumerate(r["submissions"]):
            for grade_id in dict.fromkeys(f[2] for f in r["fns"].values()):
                if any(kinds[f] == "tamper" and r["fns"][f][2] == grade_id for f in kinds):
                    expected.append(f"Attribute 'checksum' for cell {grade_id} has changed!")
                if any(kinds[f] == "disguised" and r["fns"][f][2] == grade_id for f in kinds):
                    expected.append(f"Missing grade cell {grade_id} encountered, adding to notebook")
                if flagged(grade_id, kinds, r["fns"], r["release"]):
                    expected.append(f"student{j}, {grade_id}: to look at")
    warnings = [line for line in log.split("\n") if "warning" in line.lower()]
    unexpected = [w for w in warnings if not any(e in w for e in expected)]
    assert not unexpected, "\n".join(unexpected)
    assert len(warnings) == len(expected), (len(warnings), len(expected))


def test_hand_marks_feedback_and_export(course, capsys):
    """teachers.md's order: autograde, hand-marking (here without a server), feedback, export."""
    path, results, _ = course
    chapter = "05_pooling" if "05_pooling" in results else next(
        c for c in results if any(x.metadata.get("nbgrader", {}).get("grade_id", "").endswith("-answer")
                                  for x in results[c]["release"].cells))
    sheet = path / "marks.csv"
    import hand_marks

    def marks(*args):
        hand_marks.main([*map(str, args), "--course", str(path)])
        return capsys.readouterr().out

    marks("sheet", chapter, "--out", sheet)
    with open(sheet) as f:
        rows = list(csv.DictReader(f))
    written = [r for r in rows if r["cell"].endswith("-answer")]
    looks = [r for r in rows if not r["cell"].endswith("-answer")]
    assert written and all(r["points"] == "" and "My answer" in r["answer"] and r["reference"] for r in written)
    assert all(r["automatic"] and r["note"] and r["answer"] for r in looks)
    if chapter == "05_pooling":  # the padding exercise: written, then code; both are marked by hand
        padding = [r for r in written if r["cell"] == "ex-ch5-padding-answer"]
        assert padding and all("def masked_mean" in r["answer"] and "def masked_mean" in r["reference"]
                               and "(x * m).sum(1)" in r["reference"] for r in padding)
    assert "not marked yet" in marks("status", chapter)

    bad = [dict(rows[0], cell="ex-no-such-cell", points="1"), dict(rows[0], points="0,5"),
           dict(rows[0], student="nobody", points="1")]
    with open(path / "bad.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(bad)
    with pytest.raises(SystemExit) as info:
        marks("apply", chapter, path / "bad.csv")
    said = str(info.value)
    assert "nothing written" in said and "row 2" in said and "row 3" in said and "row 4" in said, said
    assert "no cell 'ex-no-such-cell'" in said and "with a dot: 0.5" in said and "'nobody'" in said, said

    for r in rows:
        r["points"] = r["max_points"] if r["student"] == "student0" else (r["automatic"] or "0")
        r["comment"] = "Marked by the test."
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert "everything is marked" in marks("apply", chapter, sheet)
    said = []
    run([NBGRADER, "generate_feedback", chapter], path, said)
    run([NBGRADER, "export", "--to", "grades.csv"], path, said)
    noise = [line for line in "\n".join(said).split("\n") if "warning" in line.lower() or "Alternative text" in line]
    assert not noise, noise
    for student in sorted(p.name for p in (path / "feedback").iterdir()):
        feedback = (path / "feedback" / student / chapter / f"{chapter}.html").read_text()
        for secret in ("BEGIN HIDDEN TESTS", "print_outputs", "inputs_for_", "seed="):  # the numbers: test above
            assert secret not in feedback, f"{student}'s feedback shows {secret!r}"
    assert "Marked by the test." in (path / "feedback" / "student0" / chapter / f"{chapter}.html").read_text()
    with open(path / "grades.csv") as f:
        exported = {(r["assignment"], r["student_id"]): float(r["raw_score"]) for r in csv.DictReader(f)}
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        for (a, s), score in exported.items():
            try:
                want = gb.find_submission(a, s).score
            except MissingEntry:  # nbgrader exports every student for every assignment: 0 where none came in
                want = 0.0
            assert score == want, (a, s, score, want)
        assert any(score > 0 for score in exported.values())
        manual = sum(float(r["max_points"]) for r in written if r["student"] == "student0")
        sub = gb.find_submission(chapter, "student0")
        assert sub.score == sub.code_score + manual


def test_make_assignment_will_not_rebuild_over_submissions(course):
    path, results, _ = course
    chapter = next(iter(results))
    with pytest.raises(SystemExit) as info:
        assignment.main([chapter, "--course", str(path), "--no-self-test"])
    assert "submissions are in" in str(info.value)


def test_a_notebook_that_rewrites_the_gradebook_gets_nothing(course):
    """The kernel runs with the teacher's rights: a notebook that strips the hidden tests from
    the gradebook's copy of its graded cells, then answers wrongly, scored every mark before
    grading/judge.py's GuardGradebook, and the next student's grading ran without hidden tests.
    Now the gradebook is put back, the submission gets 0 on every graded cell, flagged."""
    from nbgrader.api import Gradebook

    path, results, _ = course
    chapter = next(iter(results))
    nb = nbformat.from_dict(json.loads(json.dumps(results[chapter]["release"])))
    tamper = ("import sqlite3\ncon = sqlite3.connect('../../../gradebook.db')\n"
              "con.execute(\"update source_cell set source = replace(source, 'BEGIN HIDDEN TESTS', 'begin')\")\n"
              "con.commit()\n")
    for cell in nb.cells:
        if cell.cell_type == "code" and STUB.search(cell.source):
            cell.source = tamper + STUB.sub(lambda m: m.group("indent") + "return None", cell.source)
            tamper = ""
    out = path / "submitted" / "intruder" / chapter
    out.mkdir(parents=True)
    nbformat.write(nb, out / f"{chapter}.ipynb")
    log = []
    run([NBGRADER, "autograde", chapter, "--student", "intruder"], path, log)
    assert "changed the gradebook" in log[0], log[0][-3000:]
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        grades = [g for g in gb.find_submission_notebook(chapter, chapter, "intruder").grades if g.cell_type == "code"]
        assert grades and all(g.score == 0 and g.needs_manual_grade for g in grades), \
            [(g.name, g.score, g.needs_manual_grade) for g in grades]
        cells = gb.find_notebook(chapter, chapter).source_cells
        assert any("BEGIN HIDDEN TESTS" in c.source for c in cells), "the gradebook was left without hidden tests"
    # its answer cell quotes nbgrader's marker: the feedback is made all the same (nbgrader_fixes.py)
    run([NBGRADER, "generate_feedback", chapter, "--student", "intruder"], path)


# --------------------------------------------------------------------------------------
# The grader's pieces, without nbgrader (fast)
# --------------------------------------------------------------------------------------
def _scan(*cells, forbidden=()):
    import scan
    return scan.scan(list(enumerate(cells)), forbidden)


def test_the_scan_lists_the_notebooks_machinery():
    statements, broken = _scan(
        "get_ipython().events.register('post_run_cell', print)\n",
        "import sys\ndef f(x):\n    return sys._getframe(1).f_back.f_locals['expected']\n",
        "def g(x):\n    return globals()['_i' + 'h'][-1], eval('x'), __import__('attn' + 'lib')\n",
        "%load_ext autoreload\nimport importlib\n")
    found = {h.what for s in statements for h in s.hits}
    assert {"get_ipython", "events", "_getframe", "f_back", "f_locals", "globals", "eval", "__import__",
            "%load_ext", "importlib"} <= found, found
    assert not any(h.library for s in statements for h in s.hits) and not broken


def test_the_scan_lists_detours_by_name_strings_and_modules():
    """A shortcut reached through a string (``getattr``, ``__dict__``, ``pkgutil.resolve_name``), a
    module that loads code or writes files (``runpy``, ``sqlite3``, ``os``) or ``open``: each scored
    full marks unflagged before the scan listed them (one autograded attempt each, chapter 5)."""
    statements, _ = _scan(
        "F = torch.nn.functional\ndef f(x, q):\n    return getattr(F, 'scaled_dot_' + 'product_attention')(q, x, x)\n",
        "def g(x, q):\n    return torch.nn.functional.__dict__['scaled_dot_product_attention'](q, x, x)\n",
        "import pkgutil\ndef h(x, q):\n    return pkgutil.resolve_name('attn' + 'lib.pooling:AttentionPooling')\n",
        "import runpy, sqlite3, os\ntext = open('../../../references.py').read()\n",
        forbidden=["scaled_dot_product_attention"])
    found = {h.what for s in statements for h in s.hits}
    assert {"getattr", "__dict__", "pkgutil", "runpy", "sqlite3", "os", "open"} <= found, found


def test_the_scan_does_not_accuse_innocent_code():
    """Review finding 4: a decorated function, globals named In and Out, model.eval(), a docstring
    that mentions attnlib, %timeit and a print to stderr are no hits."""
    statements, _ = _scan(
        "import sys, warnings, math\nIn = 3\nOut = []\n",
        '@torch.no_grad()\ndef f(x):\n    """Like attnlib\'s attention."""\n    print(In, Out, file=sys.stderr)\n'
        "    warnings.warn('w')\n    return model.eval()(x)\n",
        "%timeit f(1)\n%matplotlib inline\n")
    assert not [h.what for s in statements for h in s.hits]


def test_the_scan_follows_a_function_to_its_shortcut():
    """A library call in a helper, or an import in another cell, is the graded function's
    shortcut; attnlib imported but not used by it is not; torch's attention counts where
    the exercise forbids it."""
    import scan
    statements, _ = _scan("import attnlib as lib\nfrom torch.nn.functional import scaled_dot_product_attention as sdpa\n",
                          "def helper(Q, K, V):\n    return lib.attention(Q, K, V)\n",
                          "def mine(Q, K, V):\n    return helper(Q, K, V)\n",
                          "def other(Q, K, V):\n    return sdpa(Q, K, V)\n",
                          "def own(Q, K, V):\n    x = 1\n    return Q\n", "x = lib.attention(1, 2, 3)\n",
                          forbidden=["scaled_dot_product_attention"])

    def shortcuts(name):
        return sorted({h.what for s in scan.reaches(statements, name) for h in s.hits if h.library})
    assert shortcuts("mine") == ["attnlib"]
    assert shortcuts("other") == ["scaled_dot_product_attention"]
    assert shortcuts("own") == []  # its local x is not the global x


def test_a_cell_that_does_not_parse_is_reported():
    _, broken = _scan("def f(x):\n    return x +\n", "def g(x):\n    return x\n")
    assert broken == [0]


def test_the_judge_compares_as_a_teacher_would():
    import judge
    import references
    import torch
    from attnlib.checks.report import plain

    pair = references.reference("check_gauge")
    W_V, W_O, M = references.gauge_inputs(torch.Generator().manual_seed(0))
    want = references.gauge(W_V, W_O, M)
    assert judge.compare(plain(want), want, pair) is None
    assert judge.compare(plain([want[0], want[1]]), want, pair) is None
    assert "pair of tensors, not None" in judge.compare(plain(None), want, pair)
    assert "shape" in judge.compare(plain((want[0].T, want[1])), want, pair)
    assert "wrong values" in judge.compare(plain((want[0], want[1] + 1e-3)), want, pair)
    assert "NaN" in judge.compare(plain((want[0] * float("nan"), want[1])), want, pair)
    count = references.reference("check_parameter_count")
    assert judge.compare(plain(1234), 1234, count) is None
    assert judge.compare(plain(torch.tensor(1234.0)), 1234, count) is None
    assert "too low" in judge.compare(plain(1233), 1234, count)
    assert "an int, not a bool" in judge.compare(plain(True), 1, count)


def test_every_hidden_input_tells_the_count_mistakes_apart():
    """The count's mistakes that the self-check names score 0 whatever seed a class draws.

    Drawn with a random seed per class, kv == h on all five hidden inputs happened in a CI run:
    the count that gives every head its own K/V then scored full marks."""
    import references
    import torch
    from attnlib.counting import mha_parameter_count

    ref = references.reference("check_parameter_count")
    mistakes = [lambda d, h, kv: mha_parameter_count(d, h, num_kv_heads=kv, bias=False)["total"],
                lambda d, h, kv: mha_parameter_count(d, h)["total"],
                lambda d, h, kv: 4 * d * d * h + 4 * d]
    for seed in range(2000):
        g = torch.Generator().manual_seed(seed)
        cases = [ref.inputs(g) for _ in range(ref.trials)]
        for mistake in mistakes:
            assert any(mistake(*c) != ref.function(*c) for c in cases), (seed, cases)


def test_chapter_3s_references_are_the_self_checks():
    """grading/references.py writes chapter 3's two references out; their checkers agree."""
    import references
    from attnlib.checks import outcome
    from attnlib.checks.output_projection import check_fuse, check_gauge

    assert outcome(check_gauge, references.gauge).passed
    assert outcome(check_fuse, references.fuse).passed


def test_every_checker_of_the_chapters_has_a_reference():
    import references
    checked = {c for path in (ROOT / "chapters").glob("*.ipynb")
               for e in se.scan(nbformat.read(path, as_version=4))[0] for ci in e.checker_cells
               for c, _ in se.checker_calls("".join(nbformat.read(path, as_version=4).cells[ci].source))}
    assert checked and checked <= set(references.REFERENCES), checked - set(references.REFERENCES)
