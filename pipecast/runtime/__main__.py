"""Entry point: ``python -m pipecast.runtime run ...`` (arguments in :mod:`pipecast.runtime.command`).

Exit status: 0 the step succeeded (or came from the cache), 1 it failed, 2 bad arguments or setup (nothing
written), 128 + N it was stopped by signal N (SIGTERM: 143, SIGINT: 130) and recorded as cancelled.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one step and return the exit status."""
    from pipecast.errors import PipecastError, StepFailedError
    from pipecast.runtime.command import parse_command
    from pipecast.runtime.executor import execute_step
    from pipecast.runtime.process import Cancellation, StepCancelled, die_with_parent, parent_alive
    from pipecast.runtime.publish_kfp import HookSkipped
    from pipecast.runtime.verify import check_version

    # The user's code is imported by module path; the working directory is where engines put it.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cancellation = Cancellation()
    quiet = False
    step = "?"
    try:
        cancellation.install()  # first: an engine's SIGTERM (docker stop, a cancel) must never be ignored
        die_with_parent()
        invocation, options = parse_command(sys.argv[1:] if argv is None else argv)
        quiet, step = options.quiet, invocation.step
        check_version(step, invocation.pipecast_version)  # before the step's code is fetched or imported
        if os.environ.get("PIPECAST_GITHUB_FAIL_FAST"):  # a GitHub matrix item: another item may have failed
            from pipecast.runtime.github_fail_fast import stopped

            if stopped(invocation):
                return 0
        if options.github_status:
            from pipecast.runtime.publish_github import with_status

            invocation = with_status(invocation, options.github_status)
        if options.github_items or options.github_collect:
            from pipecast.runtime.publish_github import with_map_values

            invocation = with_map_values(invocation, options.github_items, options.github_collect)
        if invocation.code_sha256 is not None or invocation.code_package:
            from pipecast.runtime.code_package import activate

            activate(invocation.artifact_root, invocation.code_sha256 or "", uri=invocation.code_package)
        if invocation.timeout_seconds and options.number is None:
            from pipecast.runtime.supervisor import supervise

            result = supervise(invocation, cancellation=cancellation)
        else:
            result = execute_step(invocation, cancellation=cancellation, may_commit=parent_alive,
                                  try_number=options.number, try_id=options.id)
        if os.environ.get("GITHUB_STEP_SUMMARY"):  # GitHub Actions: the step's outputs on the run's page
            from pipecast.runtime.job_summary import append_summary

            append_summary(invocation, result.meta)
        if options.kfp_executor_input is not None:
            from pipecast.runtime.kfp_outputs import write_kfp_outputs

            write_kfp_outputs(options.kfp_executor_input, invocation, result.meta)
        if options.github_outputs or options.github_lists:
            from pipecast.runtime.publish_github import publish_outputs

            publish_outputs(invocation, options.github_outputs, options.github_lists)
        if options.azureml_publish:
            from pipecast.runtime.publish_azureml import publish

            publish(invocation, options.azureml_publish)
        if options.sagemaker_publish:
            from pipecast.runtime.publish_sagemaker import publish as publish_property_file

            publish_property_file(invocation, options.sagemaker_property_file, options.sagemaker_publish)
        if options.sagemaker_model or options.sagemaker_output_data:
            from pipecast.runtime.publish_sagemaker import place_training_outputs

            place_training_outputs(invocation, options.sagemaker_model, options.sagemaker_output_data)
        if options.sagemaker_metrics:
            from pipecast.runtime.publish_sagemaker import print_metrics

            print_metrics(invocation, options.sagemaker_metrics)
    except HookSkipped as skipped:  # a KFP hook whose event did not happen: recorded, outputs written
        print(f"pipecast: {skipped}", file=sys.stderr)
        return 0
    except StepCancelled as stop:
        print(f"pipecast: step {step!r} cancelled: {stop.reason}", file=sys.stderr)
        return stop.exit_code
    except StepFailedError as err:
        if os.environ.get("PIPECAST_GITHUB_FAIL_FAST"):  # the step's items that start later skip themselves
            from pipecast.runtime.github_fail_fast import mark_failed

            mark_failed(invocation, str(err))
        if os.environ.get("GITHUB_STEP_SUMMARY"):  # what the failed step logged, on the run's page
            from pipecast.runtime.job_summary import append_summary

            append_summary(invocation)
        if "mlflow:" in options.azureml_publish:  # Azure ML: what the failed step logged, on its job's run
            from pipecast.runtime.publish_azureml import send_metrics

            send_metrics(invocation)
        if not quiet:
            print(f"pipecast: {err}", file=sys.stderr)
        return err.exit_code
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2
    if not quiet:
        state = "cached" if result.cached else result.status
        print(f"pipecast: step {result.step!r} {state} (run {invocation.run_id})", file=sys.stderr)
    if os.environ.get("AIRFLOW_CTX_DAG_ID"):  # Airflow: the task's XCom is the last line printed (stderr too)
        from pipecast.runtime.airflow_xcom import print_step_uri

        print_step_uri(invocation)
    elif os.environ.get("PIPECAST_AIRFLOW_XCOM_FILE"):  # a KubernetesPodOperator pod: its sidecar reads the file
        from pipecast.runtime.airflow_xcom import write_step_uri

        write_step_uri(invocation, os.environ["PIPECAST_AIRFLOW_XCOM_FILE"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
