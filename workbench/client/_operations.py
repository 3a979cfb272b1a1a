"""Which :class:`~workbench.client.TrainingClient` method calls each operation of the API.

Keyed by the ``operationId`` of the server's ``/openapi.json``; ``tests/test_client_sdk.py``
walks the server's operations and fails on one that is missing here (or on a stale entry).
"""

from __future__ import annotations

from types import MappingProxyType

OPERATIONS: MappingProxyType[str, str] = MappingProxyType({
    # server
    "health": "health",
    "openapi": "openapi",
    # models
    "models_list_models": "list_models",
    "models_create_model": "create_model",
    "models_delete_model": "delete_model",
    # datasets
    "datasets_list_datasets": "list_datasets",
    "datasets_upload_dataset": "upload_dataset",
    "datasets_register_sample": "register_sample",
    "datasets_get_dataset": "get_dataset",
    "datasets_preview_dataset": "preview_dataset",
    "datasets_split_dataset": "split_dataset",
    "datasets_delete_dataset": "delete_dataset",
    # configs
    "configs_list_configs": "list_configs",
    "configs_create_config": "create_config",
    "configs_list_templates": "list_templates",
    "configs_get_config": "get_config",
    "configs_update_config": "update_config",
    "configs_delete_config": "delete_config",
    # jobs
    "jobs_list_jobs": "list_jobs",
    "jobs_start_job": "start_training",
    "jobs_execute_job": "execute",
    "jobs_job_status": "get_status",
    "jobs_local_job_status": "get_local_status",
    "jobs_job_metrics": "get_metrics",
    "jobs_local_job_metrics": "get_local_metrics",
    "jobs_job_logs": "get_logs",
    "jobs_job_checkpoints": "list_checkpoints",
    "jobs_pause_job": "pause",
    "jobs_resume_job": "resume",
    "jobs_cancel_job": "cancel",
    # live
    "live_job_events": "events",
    "live_job_events_ws": "ws_events",
    # results
    "results_validate": "validate",
    "results_download_model": "download_model",
    "results_download_link": "download_link",
    "results_download_logs": "download_logs",
    # analytics
    "analytics_job_analytics": "get_analytics",
    "analytics_analytics_summary": "analytics_summary",
    "analytics_analytics_compare": "compare",
    # experiments
    "experiments_create_sweep": "create_sweep",
    "experiments_list_sweeps": "list_sweeps",
    "experiments_get_sweep": "get_sweep",
    "experiments_suggest": "suggestions",
    "experiments_job_lineage": "lineage",
    "experiments_duplicate_job": "duplicate_job",
    "datasets_dataset_versions": "dataset_versions",
    # usage analytics
    "usage_analytics_data": "analytics_data",
    "usage_feedback": "rate_reply",
    "usage_models": "compare_models_in_use",
    "usage_export_records": "export_usage",
    "usage_sentiment_insights": "sentiment_insights",
    "usage_list_cohorts": "list_cohorts",
    "usage_create_cohort": "create_cohort",
    "usage_patch_cohort": "update_cohort",
    "usage_delete_cohort": "delete_cohort",
    "usage_analytics_chat": "analytics_chat",
    "usage_run_tool": "run_analytics_tool",
    # deployments
    "deployments_deploy_training": "deploy_training",
    "deployments_deploy_inference": "deploy",
    "deployments_list_deployments": "list_deployments",
    "deployments_deployment_status": "deployment_status",
    "deployments_stop_deployment": "stop_deployment",
    "deployments_list_secrets": "list_secrets",
    "deployments_set_secret": "set_secret",
    "deployments_delete_secret": "delete_secret",
    "deployments_download_merged": "download_merged",
    "deployments_download_gguf": "download_gguf",
    # graphrag
    "graphrag_upload": "upload_document",
    "graphrag_list_documents": "list_documents",
    "graphrag_search": "search_knowledge",
    "graphrag_neighbourhood": "chunk_neighbourhood",
    "graphrag_delete": "delete_document",
    # openai
    "openai_chat_completions": "chat_completions",
    "openai_completions": "completions",
    "openai_list_models": "list_v1_models",
    "openai_metrics": "metrics",
})
