import BootSimulator
import Crypto
import EFuse
import ESPCore
import FlashEncryption
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
        /// The eFuses as last read (refreshed after every step that may change them).
        var efuses: EFuseArray
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
        init(link: any DeviceLink, facts: LinkFacts) { self.link = link; self.facts = facts; efuses = facts.efuses }
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
            do { run = Run(link: link, facts: try link.identify()) } catch { link.close(); throw error }
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
        if resume, job.mode == .host, (last ?? .connect) < .write, Self.int(run.efuses, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1,
           run.efuses.isReadProtected(bit: 0),
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
                if let fresh = try? run.link.readEFuses() { run.efuses = fresh }
                run.link.close()
                try? await registry.finish(mac: run.mac, status: .failed, efuseSummary: Self.efuseSummary(run.efuses),
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
            run.efuses = try run.link.readEFuses()
            return job.mode == .host ? "ciphertext written, per-device key burned and protected" : "plaintext written"
        case .firstBoot:
            try ensureCryptConfig(run)   // a device whose write ran before the repair above
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
            run.efuses = try run.link.readEFuses()
            return "booted \(report.bootedPartition ?? "app") after \(report.resets) reset(s)"
        case .verify:
            run.efuses = try run.link.readEFuses()
            return try verify(run)
        case .finalEFuses:
            let note = try burnFinal(run)
            run.efuses = try run.link.readEFuses()
            return note
        case .record:
            try await registry.finish(mac: run.mac, status: .provisioned, efuseSummary: Self.efuseSummary(run.efuses), failure: nil)
            return "provisioned"
        }
    }

    func identify(_ run: Run) async throws -> String {
        let d = run.facts
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
        let e = run.efuses
        return "\(d.chip) rev \(d.chipRevision), \(d.flashSize >> 20)MB flash 0x\(String(d.flashID, radix: 16)), "
            + "ABS_DONE_1=\(Self.int(e, "ABS_DONE_1")) FLASH_CRYPT_CNT=\(Self.int(e, "FLASH_CRYPT_CNT"))"
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
        let e = run.efuses
        if Self.int(e, "ABS_DONE_1") != 0 || Self.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1 {
            throw ProvisioningError(.preflight, "the device is already secured (ABS_DONE_1 or FLASH_CRYPT_CNT set)",
                                    hint: "a secured device cannot be provisioned again")
        }
        if e.blocks[1].contains(where: { $0 != 0 }) && job.mode != .host {
            throw ProvisioningError(.preflight, "BLOCK1 already holds a flash encryption key")
        }
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
        }
        let errors = DevicePreflight.errors(entries: entries, efuses: e, flashSize: d.flashSize, chipRevision: d.chipRevision,
                                            sdkconfigValues: values, partitionTableOffset: job.partitionTableOffset)
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
            let e = run.efuses
            let cnt = Self.int(e, "FLASH_CRYPT_CNT")
            if cnt.nonzeroBitCount % 2 == 1 && e.isReadProtected(bit: 0) {
                try ensureCryptConfig(run)
                return // crashed after arming: the ciphertext was complete before the key was protected
            }
            var key: [UInt8]
            if e.blocks[1].contains(where: { $0 != 0 }) {
                key = Self.keyBytes(e) // burned by an interrupted run, still readable
                try ensureCryptConfig(run)
            } else {
                key = run.flashKey ?? (0..<32).map { _ in UInt8.random(in: 0...255) }
                run.flashKey = nil
                try burn(run, [.flashEncryptionKey(key, protect: false), .field(name: "FLASH_CRYPT_CONFIG", value: "15")])
            }
            cipher = try FlashCipher(chip: .esp32, key: key, flashCryptConfig: 0xF)
            key = [UInt8](repeating: 0, count: key.count)
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
            // Arm: encryption on (odd count) and the key unreadable and unwritable from now on.
            try burn(run, [.field(name: "FLASH_CRYPT_CNT", value: job.release ? "127" : "1"),
                           .readProtect("BLOCK1"), .writeProtect("BLOCK1")])
        }
    }

    /// Host mode: FLASH_CRYPT_CONFIG must be 0xF, the tweak the ciphertext is made with. A run
    /// killed while the key burn was being programmed can leave BLOCK1 burned and BLOCK0's
    /// FLASH_CRYPT_CONFIG not (found by the soak drill): the chip then decrypts with another
    /// tweak and never boots. Burning the missing bits repairs it (WR_DIS bit 10 permitting).
    func ensureCryptConfig(_ run: Run) throws {
        guard job.mode == .host, !run.efuses.isReadProtected(bit: 3), Self.int(run.efuses, "FLASH_CRYPT_CONFIG") != 0xF,
              run.efuses.blocks[1].contains(where: { $0 != 0 }) || run.efuses.isReadProtected(bit: 0) else { return }
        try burn(run, [.field(name: "FLASH_CRYPT_CONFIG", value: "15")])
    }

    func burn(_ run: Run, _ requests: [EFuseBurnRequest]) throws {
        try run.link.burn(requests)
        run.efuses = try run.link.readEFuses()
    }

    func verify(_ run: Run) throws -> String {
        let e = run.efuses
        var problems: [String] = []
        if sdkconfig.secureBootV2 {
            if Self.int(e, "ABS_DONE_1") == 0 { problems.append("ABS_DONE_1 is not set") }
            if let want = job.secureBootDigest {
                var got: [UInt8] = []
                for w in e.blocks[2] { for i in 0..<4 { got.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
                if got != want { problems.append("BLOCK2 does not hold the signing key's digest") }
            }
        }
        if job.mode != .none {
            if Self.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 0 { problems.append("FLASH_CRYPT_CNT is even (encryption off)") }
            if !e.isReadProtected(bit: 0) { problems.append("the flash encryption key is readable") }
            if !e.isWriteProtected(bit: 7) { problems.append("the flash encryption key is not write-protected") }
        }
        guard problems.isEmpty else { throw ProvisioningError(.verify, problems.joined(separator: "; ")) }
        return "secure boot \(sdkconfig.secureBootV2 ? "on" : "off"), flash encryption \(job.mode == .none ? "off" : "on"), key protected"
    }

    func burnFinal(_ run: Run) throws -> String {
        let layout = EFuseLayout.esp32
        var requests: [EFuseBurnRequest] = []
        for name in job.finalBurn {
            guard let f = layout.field(named: name.uppercased()), f.width <= 32 else {
                throw ProvisioningError(.finalEFuses, "'\(name)' is not a one-word ESP32 eFuse field")
            }
            let all = f.width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(f.width)) - 1
            if run.efuses.integer(f, layout: layout) != all { requests.append(.field(name: f.name, value: String(all))) }
        }
        for name in job.finalWriteProtect {
            guard let f = layout.field(named: name.uppercased()), let bit = f.writeProtect else {
                throw ProvisioningError(.finalEFuses, "'\(name)' has no write-protection bit")
            }
            if !run.efuses.isWriteProtected(bit: bit) { requests.append(.writeProtect(f.name)) }
        }
        guard !requests.isEmpty else { return "nothing left to burn" }
        try burn(run, requests)
        return (job.finalBurn + job.finalWriteProtect.map { "WR_DIS(\($0))" }).joined(separator: ", ")
    }

    // MARK: helpers

    static func int(_ e: EFuseArray, _ name: String) -> UInt64 {
        guard let f = EFuseLayout.esp32.field(named: name) else { return 0 }
        return e.integer(f, layout: .esp32)
    }

    static func keyBytes(_ e: EFuseArray) -> [UInt8] { ESP32FlashKey.key(e) ?? [] }

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
