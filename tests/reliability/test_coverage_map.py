"""Issue 9, item by item: the tests that prove each behaviour (``path::test``, relative to tests/).

1. SIGKILL mid-epoch, ``--resume``, bitwise-equal weights, metrics.csv without duplicate/missing epochs
   reliability/test_kill_resume.py::test_sigkill_mid_epoch_then_resume_is_bitwise_identical
   test_resume.py::test_resume_is_bitwise_identical_and_runs_are_deterministic (in-process, every stateful feature)
2. Kill between temp write and rename: previous last.pt / best.pt intact and loadable
   reliability/test_kill_resume.py::test_sigkill_between_temp_write_and_rename
   reliability/test_checkpoint_faults.py::test_crash_before_rename_keeps_previous_checkpoints
   reliability/test_checkpoint_faults.py::test_crash_before_rename_keeps_previous_oof_and_metrics
   reliability/test_checkpoint_faults.py::test_stale_temp_files_of_a_killed_write_are_removed
3. Truncated / corrupt checkpoint: error naming the file; ``--resume`` says exactly what to do
   reliability/test_checkpoint_faults.py::test_damaged_checkpoint_names_the_file
   reliability/test_checkpoint_faults.py::test_resume_from_a_truncated_last_pt_says_what_to_do
   reliability/test_checkpoint_faults.py::test_resume_without_any_checkpoint_says_what_to_do
   reliability/test_checkpoint_faults.py::test_predict_with_a_corrupt_best_pt_names_it
4. Missing, zero-byte, truncated-JPEG, non-image files: error naming the file, or skipped + logged + counted
   test_dataset.py::test_bad_files_error_or_skip
   test_dataset.py::test_truncated_jpeg_error_or_skipped_batch
   test_images.py::test_text_file_named_png
   reliability/test_bad_images.py::test_training_skips_unreadable_files_and_counts_them
   reliability/test_bad_images.py::test_training_stops_on_an_unreadable_file_by_default
   reliability/test_bad_images.py::test_missing_training_file_error_or_skip
   reliability/test_bad_images.py::test_predict_bad_test_image_error_or_empty_rows
5. Mask and image sizes that disagree, RLE past the image: error naming the id and both sizes
   test_dataset.py::test_mask_past_image_names_id_and_size
   reliability/test_bad_masks.py::test_rle_past_the_image_names_id_and_both_sizes
   reliability/test_bad_masks.py::test_image_not_at_the_mask_size_names_id_and_both_sizes
   reliability/test_bad_masks.py::test_malformed_rle_names_the_image
6. 16-bit, grayscale, RGBA, palette images: right channels and scale
   test_images.py::test_gray_16bit_divides_by_65535
   test_images.py::test_rgba_drops_alpha
   test_images.py::test_gif_palette
   reliability/test_image_formats.py::test_palette_png_expands_to_its_colours
   reliability/test_image_formats.py::test_every_format_gives_the_same_model_input
7. RLE codec properties and rejection of malformed strings
   test_rle.py::test_random_round_trips_match_reference
   test_rle.py::test_invalid_rle_rejected
   reliability/test_rle_properties.py::test_canonical_form_and_round_trips
   reliability/test_rle_properties.py::test_random_mutations_of_valid_strings_are_all_rejected
8. ``kseg validate``: every Kaggle rejection, one test each, naming the row
   test_validate.py::test_wrong_header
   test_validate.py::test_missing_id
   test_validate.py::test_extra_id
   test_validate.py::test_duplicate
   test_validate.py::test_bad_rle_names_the_row
   reliability/test_validate_rejections.py::test_each_rejection_names_the_row
   reliability/test_validate_rejections.py::test_files_broken_as_a_whole
9. The built kernel runs with the network blocked and without weight downloads
   test_kernel_rehearse.py::test_network_is_blocked
   test_kernel_rehearse.py::test_demo_kernel_rehearses_offline_green
   reliability/test_kernel_offline.py::test_checkpoint_asking_for_imagenet_loads_without_download
10. NaN / inf loss: stop naming epoch and step, or skip and count; last good checkpoint intact; AMP skips logged
   test_train.py::test_early_stopping_and_nonfinite_loss
   reliability/test_nonfinite.py::test_nonfinite_in_epoch_2_stops_naming_it_and_keeps_epoch_1
   reliability/test_nonfinite.py::test_skip_nonfinite_counts_skips_and_finishes
   reliability/test_nonfinite.py::test_train_loop_logs_gradscaler_skips
11. wandb offline makes no network connection; a wandb failure never stops training
   test_train.py::test_wandb_offline_run_holds_the_metrics
   reliability/test_wandb_offline.py::test_offline_training_makes_no_network_connection
   reliability/test_wandb_offline.py::test_tracker_works_with_no_network_at_all
   reliability/test_wandb_offline.py::test_wandb_failure_never_stops_training
12. Same config and seed twice: identical weights and OOF on CPU
   test_resume.py::test_resume_is_bitwise_identical_and_runs_are_deterministic
   reliability/test_determinism.py::test_same_seed_same_weights_and_oof_whatever_the_workers
   reliability/test_determinism.py::test_resume_with_worker_processes_is_identical
13. Bad config key / value / type, unknown registry names: fail before any work with key, value, choices
   test_config.py::test_bad_overrides_name_key_value_and_choices
   test_config.py::test_loss_list_and_bad_loss_name
   reliability/test_config_errors.py::test_kseg_train_fails_before_any_work
14. folds.csv not matching train.csv: clear error; OOF not matching the folds: ``kseg tune`` refuses
   reliability/test_folds_consistency.py::test_folds_csv_ids_must_match_train_csv
   reliability/test_folds_consistency.py::test_fold_out_of_range_or_not_an_integer_names_the_row
   reliability/test_folds_consistency.py::test_image_in_two_folds_names_both_rows
   reliability/test_folds_consistency.py::test_tune_refuses_oof_from_other_folds
   reliability/test_folds_consistency.py::test_kseg_tune_exit_code_and_message
15. Disk full or read-only output folder: training fails at start naming the path
   reliability/test_output_dir.py::test_read_only_runs_dir
   reliability/test_output_dir.py::test_disk_too_small_for_the_run
   reliability/test_output_dir.py::test_disk_full_write_probe
Also. weights-only loading, no pickle, nothing fetched from csv paths, no credential in a build, kaggle.json 600
   reliability/test_safety.py::test_source_loads_only_weights_and_safe_yaml
   reliability/test_safety.py::test_csv_ids_that_look_like_urls_or_paths_are_never_fetched
   reliability/test_safety.py::test_built_kernel_holds_no_credential
   reliability/test_safety.py::test_kaggle_json_permissions_warning
   reliability/test_checkpoint_faults.py::test_checkpoint_with_foreign_objects_is_refused
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^\s+(\S+\.py)::(\w+)", re.M)
ITEM = re.compile(r"^(\d+|Also)\. ", re.M)


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_item_is_listed_with_tests():
    items = ITEM.findall(__doc__)
    assert items == [str(i) for i in range(1, 16)] + ["Also"]
    blocks = ITEM.split(__doc__)[1:]
    for number, body in zip(blocks[::2], blocks[1::2], strict=True):
        assert ENTRY.search(body), f"item {number} lists no test"


def test_every_listed_test_exists():
    missing = []
    for file, name in ENTRY.findall(__doc__):
        path = TESTS / file
        if not path.is_file() or name not in _functions(path):
            missing.append(f"{file}::{name}")
    assert missing == []
