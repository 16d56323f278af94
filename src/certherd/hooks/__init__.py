"""Running user commands (pre, post and deploy hooks) with an explicit environment."""

from certherd.hooks.runner import HOOK_KINDS, HookEnvironment, ProgramResult, run_hook

__all__ = ["HOOK_KINDS", "HookEnvironment", "ProgramResult", "run_hook"]
