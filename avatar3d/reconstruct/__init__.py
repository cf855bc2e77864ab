"""``avatar3d reconstruct VIDEO``: every stage (track, appearance, avatar, evaluation, export, previews, report) in one resumable run."""
