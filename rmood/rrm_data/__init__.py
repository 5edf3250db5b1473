"""The RRM data pipeline (Liu et al. 2024): augment the training pairs with non-contextual and neutral
pairs, label them with the Bradley–Terry `rm`, and keep the originals plus the augmented pairs `rm` gets wrong."""
