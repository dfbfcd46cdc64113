"""Local paths are fine on one node; the two-node refusal is proven in cluster/test_jobs.py."""

from __future__ import annotations

from sentiment.cluster.placement import (cluster_can_span_nodes, local_backbone_folder, require_shared_paths,
                                 v1_autoscaler_has_node_types)


def test_a_single_node_cluster_without_autoscaler_accepts_local_paths(ray_cluster, tmp_path):
    assert cluster_can_span_nodes() is None
    require_shared_paths({"--output": [str(tmp_path / "out")], "--input": ["s3://bucket/in/"]}, shared_fs=False)


def test_only_folders_count_as_local_backbones(tmp_path):
    assert local_backbone_folder(str(tmp_path)) and local_backbone_folder("./my-backbone")
    assert not local_backbone_folder("minilm") and not local_backbone_folder("bert-base-cased")


def test_only_a_v1_status_with_configured_node_types_means_an_autoscaler():
    # The status every head's read-only monitor posts (keyed by node id), and `ray up`'s (by IP).
    node = "76679ac5185ee1c500dbd8ea3a60fa980614bbcd8025393ea5eea492"
    read_only = {"autoscaler_report": {"node_type_mapping": {node: f"node_{node}"}, "legacy": True}}
    from_cluster_yaml = {"autoscaler_report": {"node_type_mapping": {"10.0.1.17": "head"}, "legacy": True}}
    assert not v1_autoscaler_has_node_types(read_only)
    assert v1_autoscaler_has_node_types(from_cluster_yaml)
