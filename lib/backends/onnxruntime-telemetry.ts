// ONNX Runtime's official Linux builds (1.29 on) start Microsoft's usage telemetry with the first
// session, unless ORT_DISABLE_TELEMETRY is set then (it also leaves /tmp/mat-debug-<pid>.log per
// process). A face-analysis library should not turn that on silently inside its users' services:
// it is off unless the user set the variable themselves (ORT_DISABLE_TELEMETRY=0 allows it).

/** Sets ORT_DISABLE_TELEMETRY=1 when it is not set. Call before the first ONNX Runtime session:
 * the variable is read once, when ONNX Runtime makes its environment. Worker threads see it (it is
 * the process's real environment, not a copy). */
export function disableOnnxRuntimeTelemetry(): void {
  if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1'
}
