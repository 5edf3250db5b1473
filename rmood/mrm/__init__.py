"""The Mahalanobis reward model (MRM): representations, GDA, conversion."""
