"""Trigger modules, one blueprint each. Thin: parse the trigger's input, call one service, return."""
