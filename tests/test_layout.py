"""The layout: the library's layers (jaxtl/__init__.py) hold, no import runs up a layer or
in a cycle, the library never imports a study, every package is packaged and says what
it may import, and no module grows past 400 lines."""
import ast
import pathlib

import setuptools

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "jaxtl"

# Module (or package prefix) -> layer, as jaxtl/__init__.py states them; longest prefix wins.
LAYERS = {
    "jaxtl": 0, "jaxtl.errors": 0, "jaxtl.runtime": 0,
    "jaxtl.cache": 1, "jaxtl.stats": 1, "jaxtl.state_dict": 1, "jaxtl.partition": 1,
    "jaxtl.sharding": 1, "jaxtl.data": 1, "jaxtl.models": 1,
    "jaxtl.metrics": 2, "jaxtl.checkpoint": 2, "jaxtl.workdir": 2,
    "jaxtl.loop": 3,
    "jaxtl.objectives": 4,
    "jaxtl.finetune": 5, "jaxtl.meta": 5,
    "jaxtl.adapt": 6, "jaxtl.report": 6,
    "jaxtl.studies": 7,
}
SIBLINGS = {("jaxtl.finetune", "jaxtl.meta"), ("jaxtl.meta", "jaxtl.finetune")}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(REPO).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    out[name] = path
  return out


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
  """The jaxtl modules `name` imports, at any depth of its code (a function's import
  counts: it runs the same module)."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  return {m for m in found if m in modules and m != name}


def _layer(name: str) -> int:
  return LAYERS[max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)]


def _graph():
  modules = _modules()
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def _top(name: str) -> str:
  return ".".join(name.split(".")[:2])


def test_every_import_runs_down_a_layer_or_within_a_package():
  upward = []
  for name, imported in _graph().items():
    for other in imported:
      same_package = _top(name) == _top(other) and name != "jaxtl"
      if (_layer(other) > _layer(name) or (_layer(other) == _layer(name) and not same_package)
          or (_top(name), _top(other)) in SIBLINGS):
        upward.append(f"{name} (layer {_layer(name)}) imports {other} (layer {_layer(other)})")
  assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
  graph, state, cycles = _graph(), {}, []

  def visit(node, stack):
    state[node] = "open"
    for other in sorted(graph[node]):
      if state.get(other) == "open":
        cycles.append(" -> ".join(stack[stack.index(other):] + [other]))
      elif other not in state:
        visit(other, stack + [other])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_library_never_imports_experiments_or_benchmarks():
  for name, path in _modules().items():
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      bad = [n for n in names if n.split(".")[0] in ("experiments", "benchmarks", "tests")]
      assert not bad, f"{name} imports {bad}"


def test_every_package_is_packaged_and_says_what_it_may_import():
  folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
  missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").exists())
  assert not missing, f"folders without __init__.py (pip would leave them out): {missing}"
  found = set(setuptools.find_packages(str(REPO), include=["jaxtl", "jaxtl.*"]))
  assert found == {".".join(f.relative_to(REPO).parts) for f in folders}
  for folder in folders:
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
    assert doc, f"{folder.relative_to(REPO)}/__init__.py has no docstring"


def test_no_module_over_400_lines():
  long = {str(p.relative_to(REPO)): n for folder in ("jaxtl", "experiments", "benchmarks")
          for p in (REPO / folder).rglob("*.py")
          if (n := len(p.read_text().splitlines())) >= 400}
  assert not long, f"modules of 400 lines or more: {long}"


def test_setup_installs_the_library_only(monkeypatch):
  """`pip install -e .` puts `jaxtl` alone in site-packages: experiments/, benchmarks/ and
  tests/ run from the checkout."""
  captured = {}
  monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
  monkeypatch.chdir(REPO)
  exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
  packages = set(captured["packages"])
  assert {p.split(".")[0] for p in packages} == {"jaxtl"}, packages
  assert packages == set(setuptools.find_packages(str(REPO), include=["jaxtl", "jaxtl.*"]))
