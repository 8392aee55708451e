import BootSimulator
import Crypto
import EFuse
import ESPCore
import FlashEncryption
import Flasher
import ImageFormat
import Foundation
import NVS
import Partitions
import Registry
import VirtualDevice

/// The per-device pipeline. Every step is recorded in the registry before and after it runs;
/// with `resume`, steps up to the device's last safe step are skipped.
public struct Provisioner: Sendable {
    public let job: ProvisioningJob
    public let registry: any DeviceRegistry
    public let sdkconfig: SDKConfig
    public var resume: Bool
    /// Called after a step finished ok (tests use it to crash the process at a given step).
    public var afterStep: (@Sendable (ProvisionStep, String) -> Void)?
    public var onEvent: (@Sendable (ProvisionEvent) -> Void)?
    /// Seed for the simulated first boot's RNG (nil: the host's).
    public var rngSeed: UInt64?
    /// Run the safety rules at preflight, and refuse overridable findings at the write (off only
    /// to exercise later failure paths in drills: the write is then forced, as `flash --force`).
    public var preflightRules = true
    /// Asked before each step that is not yet done: true stops the device there (a station
    /// stopping: every finished step is recorded, so the device resumes from it later).
    public var shouldStop: (@Sendable () -> Bool)?

    public init(job: ProvisioningJob, registry: any DeviceRegistry, sdkconfig: SDKConfig, resume: Bool = false) {
        self.job = job; self.registry = registry; self.sdkconfig = sdkconfig; self.resume = resume
    }

    /// Loads the identity pool (idempotent; every station may call it). Returns how many
    /// identities were added; 0 without per-device values.
    @discardableResult
    public func loadPool() async throws -> Int {
        guard job.claimsIdentities else { return 0 }
        let rows = job.identityRows ?? IdentityPoolFile.rows(devices: job.identities, source: job.identityPool)
        return try await registry.loadIdentities(pool: job.identityPool, rows)
    }

    /// Mutable state of one run.
    /// Mutable state of one run (one task owns it; the link is used from that task only).
    final class Run: @unchecked Sendable {
        let link: any DeviceLink
        let facts: LinkFacts
        /// The chip's security decisions (one type per eFuse generation), picked at connect.
        let flow: any ChipSecurityFlow
        /// ESP32: the eFuses as last read (refreshed after every step that may change them).
        var efuses: EFuseArray
        /// ESP32-S3/C3: the eFuse blocks as last read (read-protected blocks as zeros).
        var words: EFuseBlockWords?
        /// ESP32-S3/C3 left in Secure Download Mode by its first boot (release builds with
        /// CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE): the chip refuses register reads, so from then
        /// on its eFuses are what GET_SECURITY_INFO says (``words`` keep the last full reading).
        var secureDownloadInfo: LoaderSecurityInfo?
        var mac: String { facts.mac }
        var identity: ClaimedIdentity?
        var nvsImage: [UInt8]?
        var nvsKeysImage: [UInt8]?
        /// Host mode: the fresh flash-encryption key (escrowed if asked) until write burns it.
        var flashKey: [UInt8]?
        var boot: FirstBootReport?
        /// `--resume`: the last step recorded ok before this run (steps up to it are skipped).
        var resumedAfter: ProvisionStep?
        /// `--resume`, host mode: a killed run's write armed the chip (all ciphertext written, then
        /// FLASH_CRYPT_CNT and the key's protection burned) before the step was recorded ok.
        var armedByInterruptedWrite = false
        /// The flash holds images and NVS of an earlier run (their hashes and keys stay).
        var writtenBefore: Bool { armedByInterruptedWrite || resumedAfter.map { $0 >= .write } ?? false }
        init(link: any DeviceLink, facts: LinkFacts) throws {
            self.link = link; self.facts = facts; efuses = facts.efuses; words = facts.fieldMapEFuses
            flow = try ChipSecurityFlows.flow(for: facts, port: link.port)
        }
    }

    public func provision(_ target: any ProvisioningTarget) async -> ProvisionResult {
        let port = target.port
        var result = ProvisionResult(port: port, mac: nil, identity: nil, ok: false, failedStep: nil, reason: nil,
                                     diagnosis: nil, bootedPartition: nil, virtualMilliseconds: 0, resumedAfter: nil)
        let run: Run
        // connect: not recorded (the MAC is not known yet).
        do {
            emit(port, nil, .connect, .started)
            let link = try target.connect()
            do { run = try Run(link: link, facts: try link.identify()) } catch { link.close(); throw error }
            emit(port, run.mac, .connect, .ok)
        } catch {
            emit(port, nil, .connect, .failed, Self.message(error))
            result.failedStep = ProvisionStep.connect.rawValue
            result.reason = Self.message(error)
            return result
        }
        result.mac = run.mac
        // A board seen before: provisioned and matching → left alone; secured but unknown or
        // under another manifest/key → refused. Nothing is recorded on the device's record.
        switch await admit(run) {
        case .proceed: break
        case .alreadyProvisioned(let identity):
            run.link.close()
            await closeStepsOfProvisioned(mac: run.mac)
            result.ok = true
            result.state = .skipped
            result.identity = identity
            if resume { result.resumedAfter = try? await registry.lastSafeStep(mac: run.mac)?.step }
            emit(port, run.mac, .identify, .skipped, "already provisioned as \(identity)")
            return result
        case .refused(let why):
            run.link.close()
            emit(port, run.mac, .identify, .failed, why)
            result.failedStep = ProvisionStep.identify.rawValue
            result.reason = why
            return result
        }
        // Steps a killed run left `running` are closed as `interrupted` (issue 15).
        _ = try? await registry.markInterruptedSteps(mac: run.mac)
        var last: ProvisionStep?
        if resume, let safe = try? await registry.lastSafeStep(mac: run.mac), let step = ProvisionStep(rawValue: safe.step) {
            last = step
            run.resumedAfter = step
            result.resumedAfter = step.rawValue
            if step == .record {
                run.link.close()
                result.ok = true
                result.state = .skipped
                result.identity = try? await registry.identity(pool: job.identityPool, mac: run.mac)?.id
                emit(port, run.mac, .record, .skipped, "already provisioned")
                return result
            }
        }
        if resume, job.mode == .host, (last ?? .connect) < .write, run.flow.armedByInterruptedWrite(run),
           let steps = try? await registry.steps(mac: run.mac), steps.contains(where: { $0.step == ProvisionStep.write.rawValue }) {
            // Killed between arming and recording the write: the write is complete (it arms last);
            // its NVS keys and flash key were escrowed by that run and must not be replaced.
            run.armedByInterruptedWrite = true
        }
        // Steps that only read or compute always run again (their results live in memory);
        // steps that change the device are skipped when the registry says they finished.
        let plan: [(ProvisionStep, Bool)] = [
            (.identify, false), (.claim, false), (.buildNVS, false), (.preflight, false),
            (.write, true), (.firstBoot, true), (.verify, false), (.finalEFuses, true), (.record, true),
        ]
        for (step, changesDevice) in plan {
            if changesDevice, let last, step <= last {
                emit(port, run.mac, step, .skipped, "done before (resume)")
                continue
            }
            if !changesDevice, run.writtenBefore, step == .buildNVS || step == .preflight {
                emit(port, run.mac, step, .skipped, "done before (resume)")
                continue
            }
            if !job.claimsIdentities, step == .claim || step == .buildNVS {
                // No per-device values: nothing to claim or build; the identity is the MAC.
                let why = "no [nvs] values in the manifest; identity = MAC \(run.mac)"
                if let id = try? await registry.beginStep(mac: run.mac, step: step.rawValue, detail: nil) {
                    try? await registry.finishStep(id, outcome: .skipped, detail: why)
                }
                emit(port, run.mac, step, .skipped, why)
                continue
            }
            if shouldStop?() == true {
                let why = "stopped before \(step.rawValue): the station is stopping (resumable from the last recorded step)"
                emit(port, run.mac, step, .failed, why)
                run.link.close()
                result.failedStep = step.rawValue
                result.reason = why
                result.state = .stopped
                result.identity = run.identity?.id
                result.virtualMilliseconds = run.link.virtualMilliseconds
                return result
            }
            emit(port, run.mac, step, .started)
            do {
                let detail = try await registry.recordStep(mac: run.mac, step: step.rawValue) {
                    try await self.perform(step, run)
                }
                emit(port, run.mac, step, .ok, detail)
                afterStep?(step, run.mac)
            } catch {
                let why = Self.message(error)
                emit(port, run.mac, step, .failed, why)
                result.failedStep = step.rawValue
                result.reason = why
                if step == .firstBoot, let boot = run.boot {
                    result.diagnosis = BootDiagnosis.primaryCause(log: boot.console)
                }
                let failure = "\(step.rawValue): \(why)" + (result.diagnosis.map { " — doctor: \($0)" } ?? "")
                try? run.flow.refresh(run)
                run.link.close()
                try? await registry.finish(mac: run.mac, status: .failed, efuseSummary: run.flow.summary(run),
                                           failure: SecretGuard.redactedFreeText(failure))
                result.identity = run.identity?.id
                result.virtualMilliseconds = run.link.virtualMilliseconds
                return result
            }
        }
        run.link.close()
        result.ok = true
        result.state = .provisioned
        result.identity = run.identity?.id ?? (job.claimsIdentities ? nil : run.mac)
        result.bootedPartition = run.boot?.bootedPartition
        result.virtualMilliseconds = run.link.virtualMilliseconds
        emit(port, run.mac, .record, .done, result.identity.map { "identity \($0)" })
        return result
    }

    func emit(_ port: String, _ mac: String?, _ step: ProvisionStep, _ state: ProvisionEvent.State, _ detail: String? = nil) {
        onEvent?(ProvisionEvent(port: port, mac: mac, step: step.rawValue, state: state, detail: detail))
    }

    static func message(_ error: any Error) -> String {
        (error as? DiagnosticConvertible)?.diagnostic.message ?? String(describing: error)
    }

    // MARK: steps

    func perform(_ step: ProvisionStep, _ run: Run) async throws -> String? {
        switch step {
        case .connect: return nil
        case .identify: return try await identify(run)
        case .claim:
            let claimed = try await registry.claimIdentity(pool: job.identityPool, mac: run.mac)
            run.identity = claimed
            return "\(claimed.id)" + (claimed.newlyClaimed ? "" : " (already held)")
        case .buildNVS:
            let detail = try buildNVS(run)
            guard let keys = run.nvsKeysImage, job.escrow != nil else { return detail }
            try await escrow(Array(keys.prefix(64)), kind: EscrowKind.nvsKeys, run, step: .buildNVS)
            return detail + "; keys sealed to the escrow key"
        case .preflight: return try preflight(run)
        case .write:
            try await prepareFlashKey(run)
            try write(run)
            try run.flow.refresh(run)
            return job.mode == .host ? "ciphertext written, per-device key burned and protected" : "plaintext written"
        case .firstBoot:
            try run.flow.beforeFirstBoot(run, self)   // a device whose write ran before the repair above
            // A chip the first boot leaves in Secure Download Mode takes no eFuse burn afterwards:
            // the final eFuses go first (idempotent: a resumed run skips what stuck).
            let early = run.flow.finalBurnsBeforeFirstBoot(self) ? try run.flow.burnFinal(run, self) : nil
            var config = BootConfig(sdkconfig: sdkconfig)
            config.rngSeed = rngSeed
            var report = try run.link.firstBoot(FirstBootRequest(readyLine: job.readyLine, timeout: job.bootTimeout, simulator: config))
            if report.bootedPartition == nil, let offset = report.bootedOffset {
                report.bootedPartition = job.partitions.first { Int($0.offset) == offset }?.name
            }
            run.boot = report
            guard report.booted else {
                throw ProvisioningError(.firstBoot, "the device did not boot its app: \(report.reason ?? "unknown")")
            }
            try run.flow.refresh(run)
            return "booted \(report.bootedPartition ?? "app") after \(report.resets) reset(s)"
                + (early.map { "; final eFuses burned before it (Secure Download Mode follows): \($0)" } ?? "")
        case .verify:
            try run.flow.refresh(run)
            return try verify(run)
        case .finalEFuses:
            if run.flow.finalBurnsBeforeFirstBoot(self) {
                return "burned before the first boot (the chip is in Secure Download Mode now)"
            }
            let note = try run.flow.burnFinal(run, self)
            try run.flow.refresh(run)
            return note
        case .record:
            try await registry.finish(mac: run.mac, status: .provisioned, efuseSummary: run.flow.summary(run), failure: nil)
            return "provisioned"
        }
    }

    func identify(_ run: Run) async throws -> String {
        let d = run.facts
        guard run.flow.chip == job.chip else {
            throw ProvisioningError(.identify, "the device is an \(Self.displayName(run.flow.chip)), the manifest is for the \(Self.displayName(job.chip)); nothing was changed",
                                    hint: "provision it with a manifest whose [chip] type = \"\(run.flow.chip)\" (images built for that chip)")
        }
        var facts = DeviceFacts(mac: run.mac, chip: d.chip, chipRevision: d.chipRevision,
                                flashID: String(format: "0x%06x", d.flashID), flashSize: d.flashSize,
                                station: job.station, manifestHash: job.manifestHash)
        for image in job.images {
            facts.imageHashes[image.name] = SHA256.hash(data: image.bytes).map { String(format: "%02x", $0) }.joined()
        }
        if let digest = job.secureBootDigest {
            facts.keyDigests["secure_boot_v2"] = digest.map { String(format: "%02x", $0) }.joined()
        }
        if let id = job.secureBootKeyID { facts.keyIDs["secure_boot_v2"] = id }
        if let escrow = job.escrow { facts.keyDigests["escrow_recipient"] = escrow.recipientFingerprint }
        // Resumed after the write: the flash holds the images of the run that wrote them (a
        // signature differs from run to run), so their recorded hashes stay.
        if run.writtenBefore, let recorded = try await registry.device(mac: run.mac)?.facts.imageHashes,
           !recorded.isEmpty {
            facts.imageHashes = recorded
        }
        try await registry.register(facts)
        return "\(d.chip) rev \(d.chipRevision), \(d.flashSize >> 20)MB flash 0x\(String(d.flashID, radix: 16)), "
            + run.flow.identifyDetail(run)
    }

    func buildNVS(_ run: Run) throws -> String {
        guard let identity = run.identity else { throw ProvisioningError(.buildNVS, "no identity claimed") }
        guard let device = job.identities.first(where: { $0.id == identity.id }) else {
            throw ProvisioningError(.buildNVS, "identity \(identity.id) is not in the values CSV")
        }
        guard let part = job.partition(named: job.nvsPartition) else {
            throw ProvisioningError(.buildNVS, "the partition table has no '\(job.nvsPartition)' partition")
        }
        var key: NVSKeys?
        if job.encryptNVS {
            let fresh = NVSKeys.generate()
            key = fresh
            run.nvsKeysImage = fresh.image
        }
        let image = try NVSGenerator.generate(items: try NVSCSV.items(device.rows),
                                              options: NVSImageOptions(size: Int(part.size), key: key?.bytes))
        run.nvsImage = image.bytes
        return "\(image.entryCount) entries" + (job.encryptNVS ? ", encrypted with a fresh key" : "")
    }

    func preflight(_ run: Run) throws -> String {
        let d = run.facts
        if let min = job.minRevision, d.chipRevision < min {
            throw ProvisioningError(.preflight, "chip revision \(d.chipRevision) is below the manifest's minimum \(min)")
        }
        guard d.flashSize >= job.flashSize else {
            throw ProvisioningError(.preflight, "the device has \(d.flashSize >> 20)MB flash, the manifest needs \(job.flashSize >> 20)MB")
        }
        for image in job.images where image.offset + image.bytes.count > d.flashSize {
            throw ProvisioningError(.preflight, "\(image.name) does not fit the flash")
        }
        try run.flow.checkEFusesReady(run, self)
        // The plan as a whole through the static rules that apply before writing.
        for image in job.images where image.name == "bootloader" || image.name == "app" {
            do { _ = try ESPImage(image.bytes) } catch {
                throw ProvisioningError(.preflight, "\(image.name) is not a valid ESP image: \(Self.message(error))")
            }
        }
        guard preflightRules else { return "chip, flash and eFuses ready (PF rules skipped)" }
        // The PF rules on the whole plan (plaintext, as the on-chip flow writes it) with this device's facts.
        var entries = job.images.map { DevicePreflight.Entry(name: $0.name, offset: $0.offset, bytes: $0.bytes) }
        if let nvs = run.nvsImage, let p = job.partition(named: job.nvsPartition) {
            entries.append(.init(name: "nvs", offset: Int(p.offset), bytes: nvs))
        }
        var values = ["CONFIG_PARTITION_TABLE_OFFSET": "0x" + String(job.partitionTableOffset, radix: 16),
                      "CONFIG_ESPTOOLPY_FLASHSIZE": "\"\(job.flashSize >> 20)MB\""]
        if sdkconfig.secureBootV2 { values["CONFIG_SECURE_BOOT"] = "y"; values["CONFIG_SECURE_BOOT_V2_ENABLED"] = "y" }
        if sdkconfig.flashEncryption {
            values["CONFIG_SECURE_FLASH_ENC_ENABLED"] = "y"
            values[sdkconfig.releaseMode ? "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE" : "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT"] = "y"
            // XTS key size (S3/C3 rules; the ESP32's rules do not read it).
            if sdkconfig.flashEncryptionAES256 { values["CONFIG_SECURE_FLASH_ENCRYPTION_AES256"] = "y" }
        }
        let errors = run.flow.preflightErrors(run, entries: entries, sdkconfigValues: values,
                                              partitionTableOffset: job.partitionTableOffset)
        if !errors.isEmpty { throw ProvisioningError(.preflight, errors.joined(separator: "; ")) }
        return "chip, flash and eFuses ready; preflight rules passed"
    }

    func encrypted(_ offset: Int) -> Bool { job.isEncryptedInFlash(offset) }

    func write(_ run: Run) throws {
        var writes = job.images.map { ($0.name, $0.offset, $0.bytes) }
        if let nvs = run.nvsImage, let p = job.partition(named: job.nvsPartition) { writes.append((p.name, Int(p.offset), nvs)) }
        if let keys = run.nvsKeysImage {
            guard let p = job.nvsKeysPartitionEntry else {
                throw ProvisioningError(.write, "NVS is encrypted but the partition table has no nvs_keys partition")
            }
            writes.append((p.name, Int(p.offset), keys))
        }
        var cipher: FlashCipher?
        if job.mode == .host {
            let fresh = run.flashKey
            run.flashKey = nil
            guard let c = try run.flow.hostCipher(run, fresh: fresh, self) else { return }
            cipher = c
        }
        var regions: [(name: String, offset: Int, bytes: [UInt8])] = []
        for (name, offset, bytes) in writes {
            var data = bytes
            if let cipher, encrypted(offset) {
                while data.count % 32 != 0 { data.append(0xFF) }
                data = try cipher.encrypt(data, at: offset)
            }
            guard offset + data.count <= run.facts.flashSize else {
                throw ProvisioningError(.write, "\(name) at 0x\(String(offset, radix: 16)) does not fit the \(run.facts.flashSize >> 20)MB flash")
            }
            regions.append((name, offset, data))
        }
        try run.link.write(regions, force: !preflightRules)
        if job.mode == .host {
            // Arm: encryption on and the key unreadable and unwritable from now on.
            try run.flow.arm(run, self)
        }
    }

    func verify(_ run: Run) throws -> String {
        let problems = run.flow.verify(run, self)
        guard problems.isEmpty else { throw ProvisioningError(.verify, problems.joined(separator: "; ")) }
        if run.secureDownloadInfo != nil {
            return "secure boot \(sdkconfig.secureBootV2 ? "on" : "off"), flash encryption \(job.mode == .none ? "off" : "on"), "
                + "read through GET_SECURITY_INFO (Secure Download Mode: digest and key protection not readable; "
                + "the ROM checked the bootloader against the burned digest at boot)"
        }
        return "secure boot \(sdkconfig.secureBootV2 ? "on" : "off"), flash encryption \(job.mode == .none ? "off" : "on"), key protected"
    }

    // MARK: helpers

    static func int(_ e: EFuseArray, _ name: String) -> UInt64 {
        guard let f = EFuseLayout.esp32.field(named: name) else { return 0 }
        return e.integer(f, layout: .esp32)
    }

    static func keyBytes(_ e: EFuseArray) -> [UInt8] { ESP32FlashKey.key(e) ?? [] }

    /// `esp32s3` → `ESP32-S3` (messages).
    static func displayName(_ chip: String) -> String {
        let c = chip.uppercased()
        return c.hasPrefix("ESP32") && c.count > 5 && !c.contains("-") ? "ESP32-" + c.dropFirst(5) : c
    }

    /// The security-relevant eFuses as recorded in the registry (no key material).
    /// BLOCK1 (the flash-encryption key) as a state. A read-protected block reads back as zeros
    /// from a real chip, so zeros under RD_DIS are judged by what a key burn leaves behind:
    /// FLASH_CRYPT_CNT set or BLOCK1 write-disabled (WR_DIS bit 7) means burned.
    public static func keyBlockState(_ e: EFuseArray) -> String {
        let readProtected = e.isReadProtected(bit: 0)
        if e.blocks[1].contains(where: { $0 != 0 }) { return readProtected ? "burned, read-protected" : "burned, readable" }
        guard readProtected else { return "empty" }
        if int(e, "FLASH_CRYPT_CNT") != 0 || e.isWriteProtected(bit: 7) { return "burned, read-protected" }
        return "read-protected, contents unknown"
    }

    public static func efuseSummary(_ e: EFuseArray) -> [String: String] {
        var out: [String: String] = [:]
        for name in ["ABS_DONE_1", "FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "JTAG_DISABLE", "DISABLE_DL_ENCRYPT",
                     "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE", "UART_DOWNLOAD_DIS", "CONSOLE_DEBUG_DISABLE"] {
            out[name] = String(int(e, name))
        }
        // Named so the registry's secret guard sees states, not blocks (never their contents).
        out["FLASH_ENCRYPTION_BLOCK1"] = keyBlockState(e)
        out["SECURE_BOOT_BLOCK2"] = e.blocks[2].contains { $0 != 0 } ? "digest burned" : "empty"
        return out
    }
}
