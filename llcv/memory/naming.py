"""Names for tensors in a memory breakdown: the module running the op that made them.

Forward: a stack of module names kept by global forward pre/post hooks. Backward: autograd nodes
carry no module, so the forward hooks write the current module's name into the metadata of every
new autograd node reachable from a module's inputs (ops of its caller) and outputs (its own ops);
during backward the node being executed names the op.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

_LABEL = "llcv_module"


class ModuleNames:
    """Names ops by the module running them: a stack kept by global forward hooks, and in
    backward the label the forward hooks wrote into each autograd node's metadata."""

    def __init__(self, model: nn.Module) -> None:
        root = type(model).__name__
        self.names = {id(m): (n or root) for n, m in model.named_modules()}
        self.stack = [root]

    @staticmethod
    def _label(value: Any, name: str) -> None:
        """Write ``name`` into every unlabelled autograd node behind ``value``."""
        todo = [t.grad_fn for t in tensors_in(value) if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or _LABEL in node.metadata:
                continue
            node.metadata[_LABEL] = name
            todo.extend(nxt for nxt, _ in node.next_functions)

    def _pre(self, module: nn.Module, args: Any) -> None:
        self._label(args, self.stack[-1])  # ops done by the caller before this call
        self.stack.append(self.names.get(id(module), type(module).__name__))

    def _post(self, module: nn.Module, args: Any, out: Any) -> None:
        self._label(out, self.stack[-1])
        if len(self.stack) > 1:
            self.stack.pop()

    def __call__(self, func: Any) -> str:
        """``"<module> / <op>"`` for an ATen op being dispatched now."""
        op = func.overloadpacket.__name__
        node = torch._C._current_autograd_node()
        if node is not None:
            return f"{node.metadata.get(_LABEL, '?')} / {op}"
        return f"{self.stack[-1]} / {op}"

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        """Install the global forward hooks for the duration of the block."""
        pre = module_hooks.register_module_forward_pre_hook(self._pre)
        post = module_hooks.register_module_forward_hook(self._post)
        try:
            yield
        finally:
            pre.remove()
            post.remove()


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a module's arguments or output (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    return []
