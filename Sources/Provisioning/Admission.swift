import EFuse
import Foundation
import Registry

/// What the pipeline does with a board once its chip is identified, before anything is recorded
/// or claimed: boards plugged in again are recognised from the registry.
enum Admission: Sendable, Equatable {
    /// A blank board, or one the registry knows as in progress/failed under this line's manifest.
    case proceed
    /// The registry says `provisioned` and the chip matches the record: left alone.
    case alreadyProvisioned(identity: String)
    /// A secured board the registry does not know, knows under another manifest or key, or whose
    /// chip contradicts its `provisioned` record; or a board marked RMA.
    case refused(String)
}

extension Provisioner {
    /// eFuse summary fields compared between the record and the chip (numbers only).
    static let securityFields = ["ABS_DONE_1", "FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "JTAG_DISABLE", "DISABLE_DL_ENCRYPT",
                                 "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE", "UART_DOWNLOAD_DIS", "CONSOLE_DEBUG_DISABLE"]

    /// Decides from the registry record and the chip's eFuses (read at connect). Records an
    /// event for boards left alone or refused; never writes the device record.
    func admit(_ run: Run) async -> Admission {
        let secured = run.flow.isSecured(run)
        let record: DeviceRecord?
        do { record = try await registry.device(mac: run.mac) } catch {
            return .refused("cannot read the registry record: \(Self.message(error))")
        }
        let jobDigest = job.secureBootDigest.map(Self.hex)

        func refuse(_ why: String) async -> Admission {
            try? await registry.recordEvent(mac: run.mac, kind: "refused", station: job.station, detail: why)
            return .refused(why)
        }

        if let record, record.status == .rma {
            return await refuse("marked RMA in the registry: not provisioned again")
        }
        if let record, record.status == .provisioned {
            var mismatches: [String] = []
            if record.facts.manifestHash != job.manifestHash {
                mismatches.append("provisioned under manifest \(record.facts.manifestHash.map { String($0.prefix(12)) } ?? "?")…, "
                                  + "this line runs \(job.manifestHash.prefix(12))…")
            }
            let recordedDigest = record.facts.keyDigests["secure_boot_v2"]
            if recordedDigest != jobDigest {
                mismatches.append("recorded Secure Boot key digest \(recordedDigest.map { String($0.prefix(12)) + "…" } ?? "none"), "
                                  + "this line's \(jobDigest.map { String($0.prefix(12)) + "…" } ?? "none")")
            }
            if let recordedDigest, let mismatch = run.flow.digestMismatch(run, recorded: recordedDigest) {
                mismatches.append(mismatch)
            }
            let now = run.flow.summary(run)
            for name in run.flow.securityFields {
                if let was = record.efuseSummary?[name], let is_ = now[name], was != is_ {
                    mismatches.append("\(name) is \(is_) on the chip, \(was) in the record")
                }
            }
            let identity = record.identity ?? run.mac
            if mismatches.isEmpty {
                try? await registry.recordEvent(mac: run.mac, kind: "already-provisioned", station: job.station,
                                                detail: "plugged in again; left alone as \(identity)")
                return .alreadyProvisioned(identity: identity)
            }
            return await refuse("the registry says provisioned (as \(identity)), but " + mismatches.joined(separator: "; ")
                                + "; left alone (record unchanged)")
        }
        guard secured else { return .proceed }
        guard let record else {
            return await refuse("the chip is already secured (Secure Boot or flash encryption on) and the registry does not know it; "
                                + "set it aside: it was provisioned by another line or registry")
        }
        // In progress or failed under this line: a resumable run. Under another manifest or key: refused.
        if record.facts.manifestHash != job.manifestHash || record.facts.keyDigests["secure_boot_v2"] != jobDigest {
            return await refuse("the chip is already secured and the registry knows it under another manifest or Secure Boot key "
                                + "(status \(record.status.rawValue)); left alone")
        }
        return .proceed
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}

extension Provisioner {
    /// Steps a killed run left `running` on a record that is already `provisioned` (found by the
    /// soak drill: killed between the record step's final status and its `ok`, the step stayed
    /// `running` forever, since a provisioned board is left alone before steps are looked at).
    /// The `record` step did its work — the status it writes is final — and is closed `ok`; any
    /// other is closed `interrupted`, with the time this was found.
    func closeStepsOfProvisioned(mac: String) async {
        guard let steps = try? await registry.steps(mac: mac) else { return }
        for step in steps where step.outcome == .running {
            if step.step == ProvisionStep.record.rawValue {
                try? await registry.finishStep(step.id, outcome: .ok,
                                               detail: "closed later: the record was already provisioned when the process ended")
            } else {
                try? await registry.finishStep(step.id, outcome: .interrupted,
                                               detail: "interrupted: the process ended while this step was running")
            }
        }
    }
}
