package dev.headrace.sdktest;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.dapr.durabletask.Task;
import io.dapr.workflows.Workflow;
import io.dapr.workflows.WorkflowActivity;
import io.dapr.workflows.WorkflowActivityContext;
import io.dapr.workflows.WorkflowStub;
import io.dapr.workflows.client.DaprWorkflowClient;
import io.dapr.workflows.client.WorkflowRuntimeStatus;
import io.dapr.workflows.client.WorkflowState;
import io.dapr.workflows.runtime.WorkflowRuntime;
import io.dapr.workflows.runtime.WorkflowRuntimeBuilder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A Dapr workflow app written against Dapr's Java SDK only (io.dapr:dapr-sdk-workflows), pointed at
 * its sidecar by environment only (DAPR_GRPC_ENDPOINT or DAPR_GRPC_PORT, DAPR_API_TOKEN), as any
 * Dapr app is. Headrace's tests run it against `headrace grpc`.
 *
 * <p>Usage: {@code App <mode> <instance ID prefix>}, where mode is
 * <ul>
 *   <li>{@code engine}: the workflows are Headrace's (engine_chain, engine_fanout, engine_approval,
 *       tests/grpc/java_workflows.py); this app runs their activities (remote activity work items)
 *       and drives them with its DaprWorkflowClient;</li>
 *   <li>{@code app}: the same three workflows are this app's own (java_chain, java_fanout,
 *       java_approval), run by the SDK's executor from orchestrator work items;</li>
 *   <li>{@code worker} (no prefix): only the WorkflowRuntime, until killed (the fault tests).</li>
 * </ul>
 * Prints one JSON line: each workflow's status and output, and how often each activity call ran,
 * so a test can see that nothing ran twice.
 */
public final class App {
  /** How often each activity call ran in this process, by activity name and call. */
  static final Map<String, AtomicInteger> RUNS = new ConcurrentHashMap<>();

  private App() {
  }

  static void ran(WorkflowActivityContext ctx) {
    // The SDK's workflows give each call a task execution ID; Headrace's own workflows send none,
    // and this app's inputs are all different, so the input names the call then.
    String call = ctx.getTaskExecutionId().isEmpty()
        ? String.valueOf(ctx.getInput(Object.class)) : ctx.getTaskExecutionId();
    RUNS.computeIfAbsent(ctx.getName() + "/" + call, k -> new AtomicInteger()).incrementAndGet();
    faultHook(ctx.getName() + " " + ctx.getInput(Object.class));
  }

  /**
   * For the fault tests (tests/grpc/test_remote_faults.py), from the environment: FAULT_MARKS, a
   * folder where each activity run appends a line to `act-start`; FAULT_HOLD=activity, every
   * activity then blocks until the test kills this app.
   */
  static synchronized void faultHook(String line) {
    String marks = System.getenv("FAULT_MARKS");
    if (marks == null) {
      return;
    }
    try {
      Files.writeString(Path.of(marks, "act-start"), line + "\n", StandardOpenOption.CREATE,
          StandardOpenOption.APPEND);
      if ("activity".equals(System.getenv("FAULT_HOLD"))) {
        new CountDownLatch(1).await();
      }
    } catch (IOException | InterruptedException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Upper-cases its input. */
  public static final class Upper implements WorkflowActivity {
    @Override
    public Object run(WorkflowActivityContext ctx) {
      ran(ctx);
      return ctx.getInput(String.class).toUpperCase();
    }
  }

  /** Appends an exclamation mark. */
  public static final class Exclaim implements WorkflowActivity {
    @Override
    public Object run(WorkflowActivityContext ctx) {
      ran(ctx);
      return ctx.getInput(String.class) + "!";
    }
  }

  /** Squares an integer. */
  public static final class Square implements WorkflowActivity {
    @Override
    public Object run(WorkflowActivityContext ctx) {
      ran(ctx);
      int n = ctx.getInput(Integer.class);
      return n * n;
    }
  }

  /** A chain: upper, then exclaim twice ("hello" -> "HELLO!!"). */
  public static final class Chain implements Workflow {
    @Override
    public WorkflowStub create() {
      return ctx -> {
        String text = ctx.getInput(String.class);
        text = ctx.callActivity("java_upper", text, String.class).await();
        text = ctx.callActivity("java_exclaim", text, String.class).await();
        text = ctx.callActivity("java_exclaim", text, String.class).await();
        ctx.complete(text);
      };
    }
  }

  /** A fan-out: squares its input's numbers in parallel and returns their sum. */
  public static final class FanOut implements Workflow {
    @Override
    public WorkflowStub create() {
      return ctx -> {
        int[] numbers = ctx.getInput(int[].class);
        List<Task<Integer>> squares = new ArrayList<>();
        for (int n : numbers) {
          squares.add(ctx.callActivity("java_square", n, Integer.class));
        }
        int sum = 0;
        for (int square : ctx.allOf(squares).await()) {
          sum += square;
        }
        ctx.complete(sum);
      };
    }
  }

  /** An external event: waits for "approve" (a name), then upper-cases the approver's name. */
  public static final class Approval implements Workflow {
    @Override
    public WorkflowStub create() {
      return ctx -> {
        ctx.setCustomStatus("waiting");
        String by = ctx.waitForExternalEvent("approve", Duration.ofMinutes(5), String.class).await();
        String shouted = ctx.callActivity("java_upper", by, String.class).await();
        ctx.complete("approved by " + shouted);
      };
    }
  }

  static WorkflowRuntime runtime(boolean withWorkflows) {
    WorkflowRuntimeBuilder builder = new WorkflowRuntimeBuilder()
        .registerActivity("java_upper", new Upper())
        .registerActivity("java_exclaim", new Exclaim())
        .registerActivity("java_square", new Square());
    if (withWorkflows) {
      builder.registerWorkflow("java_chain", Chain.class)
          .registerWorkflow("java_fanout", FanOut.class)
          .registerWorkflow("java_approval", Approval.class);
    }
    return builder.build();
  }

  static Map<String, Object> outcome(WorkflowState state) {
    Map<String, Object> seen = new LinkedHashMap<>();
    seen.put("status", state == null ? null : state.getRuntimeStatus().name());
    seen.put("output", state == null ? null : state.getSerializedOutput());
    // The SDK gives every state a FailureDetails (empty unless the workflow failed), as on daprd.
    if (state != null && state.getRuntimeStatus() == WorkflowRuntimeStatus.FAILED) {
      seen.put("failure", state.getFailureDetails().getErrorMessage());
    }
    return seen;
  }

  static Map<String, Object> drive(String names, String prefix) throws Exception {
    Map<String, Object> seen = new LinkedHashMap<>();
    Duration wait = Duration.ofSeconds(90);
    try (DaprWorkflowClient client = new DaprWorkflowClient()) {
      String chain = client.scheduleNewWorkflow(names + "_chain", "hello", prefix + "_chain");
      String fanout = client.scheduleNewWorkflow(names + "_fanout", new int[] {1, 2, 3, 4, 5}, prefix + "_fanout");
      String approval = client.scheduleNewWorkflow(names + "_approval", null, prefix + "_approval");
      // The event is raised once the workflow runs (and so waits for it), as an app would.
      WorkflowState started = client.waitForWorkflowStart(approval, wait, false);
      seen.put("approval_started", started.getRuntimeStatus().name());
      client.raiseEvent(approval, "approve", "ann");
      seen.put("chain", outcome(client.waitForWorkflowCompletion(chain, wait, true)));
      seen.put("fanout", outcome(client.waitForWorkflowCompletion(fanout, wait, true)));
      seen.put("approval", outcome(client.waitForWorkflowCompletion(approval, wait, true)));
      // Steering: a second approval is suspended, resumed, terminated and purged.
      String steered = client.scheduleNewWorkflow(names + "_approval", null, prefix + "_steered");
      client.waitForWorkflowStart(steered, wait, false);
      client.suspendWorkflow(steered, "pause");
      seen.put("steered_suspended", client.getWorkflowState(steered, false).getRuntimeStatus().name());
      client.resumeWorkflow(steered, "go on");
      seen.put("steered_resumed", client.getWorkflowState(steered, false).getRuntimeStatus().name());
      client.terminateWorkflow(steered, "stopped");
      seen.put("steered", outcome(client.waitForWorkflowCompletion(steered, wait, true)));
      seen.put("steered_purged", client.purgeWorkflow(steered));
      WorkflowState gone = client.getWorkflowState(steered, false);
      seen.put("steered_gone", gone == null || gone.getName().isEmpty());
      // Java's client answers exists=false with an empty state rather than null (its
      // OrchestrationMetadata.isInstanceFound: no name and no ID), daprd's answer included.
      WorkflowState unknown = client.getWorkflowState(prefix + "_never", false);
      seen.put("unknown", unknown == null || unknown.getName().isEmpty() && unknown.getWorkflowId().isEmpty());
      // No ID given: the Java client makes a random UUID, which the front end must take as daprd does.
      String generated = client.scheduleNewWorkflow(names + "_chain", "uuid");
      seen.put("generated", outcome(client.waitForWorkflowCompletion(generated, wait, true)));
    }
    return seen;
  }

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    if (mode.equals("worker")) {
      runtime(true).start(true);
      return;
    }
    String prefix = args[1];
    runtime(mode.equals("app")).start(false);
    Map<String, Object> seen = drive(mode.equals("app") ? "java" : "engine", prefix);
    Map<String, Integer> runs = new LinkedHashMap<>();
    RUNS.forEach((key, count) -> runs.put(key, count.get()));
    seen.put("activity_runs", runs);
    System.out.println(new ObjectMapper().writeValueAsString(seen));
    // Leave at once: WorkflowRuntime.close() shuts its channel down and waits up to 60 s for the
    // calls on it to end, and its own GetWorkItems stream only ends when the process does.
    System.exit(0);
  }
}
