"""The running sequences' KV caches side by side in one DynamicCache, left-padded to one length.

A newcomer is prefilled alone, then joins the batch: its cache and the batch's are padded on the left
to the same length and stacked. Every decode step then runs all rows in one forward pass, with an
attention mask that hides the padding and each row's own positions. A finished row is dropped, and
columns that only hold padding are cut off.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - tensor.shape[-2]
    if missing <= 0:
        return tensor
    shape = (*tensor.shape[:-2], missing, tensor.shape[-1])
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The layers of a joinable cache (see `joinable`)."""
    return [cast(DynamicLayer, layer) for layer in cache.layers]


def _kv(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    return cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)


def joinable(cache: DynamicCache) -> bool:
    """Whether rows can be stacked: plain key/value layers (no sliding-window or recurrent state)."""
    return all(type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers)


class KVBatch:
    def __init__(self, model: Any, device: torch.device) -> None:
        self._model = model
        self._device = device
        # transformers 5.x renames forward's `past_key_values` to `cache` (the old name warns)
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, columns]: 1 where a column holds a real token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def can_join(self, cache: DynamicCache) -> bool:
        return self.cache is None or (joinable(cache) and joinable(self.cache))

    @torch.inference_mode()
    def prefill(self, tokens: list[int]) -> tuple[torch.Tensor, DynamicCache]:
        """Reads one prompt alone; returns the logits for its next token and its cache."""
        cache = DynamicCache()
        ids = torch.tensor([tokens], device=self._device)
        out = self._model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: cache})
        logits: torch.Tensor = out.logits[0, -1, :].float()
        return logits, cache

    def join(self, cache: DynamicCache, length: int) -> None:
        """Adds a prefilled sequence of `length` tokens as the last row."""
        row = torch.ones((1, length), dtype=torch.long, device=self._device)
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, row
            return
        columns = max(int(self.mask.shape[1]), length)
        for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            (my_keys, my_values), (their_keys, their_values) = _kv(mine), _kv(theirs)
            mine.keys = torch.cat([_pad_left(my_keys, columns), _pad_left(their_keys, columns)])
            mine.values = torch.cat([_pad_left(my_values, columns), _pad_left(their_values, columns)])
        self.mask = torch.cat([_pad_left_mask(self.mask, columns), _pad_left_mask(row, columns)])

    def keep(self, rows: list[int]) -> None:
        """Keeps only these rows (in this order) and drops columns that are padding in every row."""
        if self.cache is None or self.mask is None:
            return
        if not rows:
            self.cache = self.mask = None
            return
        if rows == list(range(self.rows)):
            return
        index = torch.tensor(rows, device=self._device)
        mask = self.mask[index]
        first = int(torch.nonzero(mask.sum(dim=0))[0].item())
        for layer in _layers(self.cache):
            keys, values = _kv(layer)
            layer.keys = keys[index, :, first:, :]
            layer.values = values[index, :, first:, :]
        self.mask = mask[:, first:]

    @torch.inference_mode()
    def step(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Decodes one token per row; returns each row's logits for the token after it."""
        if self.cache is None or self.mask is None:
            raise RuntimeError("step() on an empty batch")
        ids = torch.tensor(tokens, device=self._device).unsqueeze(1)
        pos = torch.tensor(positions, device=self._device).unsqueeze(1)
        mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        out = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            **{self._cache_arg: self.cache},
        )
        self.mask = mask
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits


def _pad_left_mask(mask: torch.Tensor, columns: int) -> torch.Tensor:
    missing = columns - int(mask.shape[1])
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)
