"""The timer the PyTorch scripts of bench/ share: CUDA events around repeated calls."""
import torch


def timed_ms(fn, reps: int, warmup: int) -> float:
    """Mean ms per call of `fn` over `reps` calls between CUDA events, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps
