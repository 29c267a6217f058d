"""The action catalogue: every action kurative can run, declared with params, RBAC, risk and safety."""
