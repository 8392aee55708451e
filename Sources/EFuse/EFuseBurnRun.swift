/// The sequence every eFuse burn follows (the `efuse burn*` and `*-protect` commands, and any
/// program that burns through the library): plan against the chip as it is now, show the plan
/// (never key material), stop there unless confirmed, burn, read back and say what stuck.
public enum EFuseBurnRun {
    public enum Outcome: Equatable, Sendable {
        /// Nothing to burn: every request is already on the chip.
        case nothingToDo
        case dryRun
        /// The plan was shown and not confirmed: nothing was burned.
        case notConfirmed
        /// Burned; `allStuck` false when some bit did not read back as burned (see the read-back lines).
        case burned(allStuck: Bool)
    }

    /// Runs the sequence on `client`, giving every line of the plan and read-back to `emit`.
    public static func run(_ requests: [EFuseBurnRequest], client: EFuseClient, portName: String, confirmed: Bool,
                           dryRun: Bool = false, emit: (String) -> Void) throws -> Outcome {
        let plan = try client.plan(requests)
        emit("eFuse burn plan for \(portName):")
        plan.lines.forEach(emit)
        if let stop = stopBeforeBurning(planIsEmpty: plan.isEmpty, dryRun: dryRun, confirmed: confirmed, emit: emit) {
            return stop
        }
        let report = try client.execute(plan)
        report.readBackLines.forEach(emit)
        if report.allStuck { emit("all requested bits read back as burned") }
        return .burned(allStuck: report.allStuck)
    }

    /// What every burn decides once its plan is shown (ESP32 and the field-map chips, over a port
    /// or on a file): nothing to do, a dry run, or not confirmed — each an outcome with its line —
    /// or nil: go on and burn. `emptyLine` is said when there is nothing to burn.
    public static func stopBeforeBurning(planIsEmpty: Bool, dryRun: Bool, confirmed: Bool, emptyLine: String? = nil,
                                         emit: (String) -> Void) -> Outcome? {
        if planIsEmpty {
            emptyLine.map(emit)
            return .nothingToDo
        }
        if dryRun {
            emit("dry run: nothing was burned")
            return .dryRun
        }
        guard confirmed else {
            emit("nothing was burned: eFuse burns are irreversible; run again with --yes to burn exactly this plan")
            return .notConfirmed
        }
        return nil
    }
}
