"""The shared EDM diffusion core (Karras et al. 2022): preconditioning, loss, UNet, samplers, training."""
