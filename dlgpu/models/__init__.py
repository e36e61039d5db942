"""Model families assembled from dlgpu.nn: MLPs, CNNs, recurrent networks, autoencoders, a GAN."""
