"""torch.nn.Module layers over dlgpu.functional (drop-ins for their torch counterparts)."""
