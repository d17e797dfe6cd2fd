"""Helpers shared by the GAL tests: which channels a plan keeps, read off the soft masks."""
import torch


def kept_channels(masks, plan):
    """Each masked group's channels that ``plan`` keeps, read off its consumers' columns."""
    keep = plan["keep"]
    out = {}
    for consumer in masks.consumers:
        kept = keep.get(consumer.weight, {}).get(consumer.dim)
        for part in consumer.parts:
            stays = torch.ones(len(part.positions), dtype=torch.bool) if kept is None else \
                torch.isin(part.positions, torch.as_tensor(kept))
            out.setdefault(part.group, set()).update(part.channels[stays].tolist())
    return out


def zero_removed(masks, plan):
    """Set to 0 the masks of the channels ``plan`` removes (the masked network 'before removal')."""
    kept = kept_channels(masks, plan)
    with torch.no_grad():
        for g in masks.groups:
            gone = torch.ones(masks.mask(g).numel(), dtype=torch.bool)
            gone[sorted(kept[g])] = False
            masks.mask(g)[gone] = 0.0
