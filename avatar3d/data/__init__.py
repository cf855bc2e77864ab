"""The data layer: tracked sequences and frames on disk, the train/test split, run directories."""
