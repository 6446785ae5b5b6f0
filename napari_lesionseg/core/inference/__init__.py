"""Running models: device choice, whole-image / sliding-window / volume prediction, live thresholding."""
