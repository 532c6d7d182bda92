"""The intervention core: interventions as values on registered sites, the hook and fast
engines that run them, contrasts, metrics, batched capture, and circuit graphs."""
