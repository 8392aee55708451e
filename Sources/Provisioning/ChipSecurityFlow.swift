import EFuse
import ESPCore
import FlashEncryption
import Foundation

/// The chip-specific security decisions of the per-device pipeline, one type per eFuse
/// generation: ``ESP32SecurityFlow`` (the classic ESP32: BLOCK1/BLOCK2, FLASH_CRYPT_CNT, ABS_DONE_1)
/// and ``FieldMapSecurityFlow`` (ESP32-S3/C3: six key blocks with purposes, SPI_BOOT_CRYPT_CNT,
/// SECURE_BOOT_EN). The pipeline picks one from the link's facts at connect and asks it; the
/// steps themselves (ordering, registry, escrow, resume) are chip-neutral.
protocol ChipSecurityFlow: Sendable {
    /// The chip the flow provisions, as manifests name it (`esp32`, `esp32s3`, `esp32c3`).
    var chip: String { get }
    /// Re-reads the chip's eFuses into `run` (after every step that may change them).
    func refresh(_ run: Provisioner.Run) throws
    /// The end of the identify step's detail line (the security eFuses as read).
    func identifyDetail(_ run: Provisioner.Run) -> String
    /// Secure Boot or flash encryption is already on.
    func isSecured(_ run: Provisioner.Run) -> Bool
    /// Admission of a board recorded `provisioned`: why the chip contradicts the recorded Secure
    /// Boot key digest (hex), nil when it holds it.
    func digestMismatch(_ run: Provisioner.Run, recorded: String) -> String?
    /// Numeric eFuse summary fields compared between a `provisioned` record and the chip.
    var securityFields: [String] { get }
    /// Preflight: refuses a chip whose eFuses do not allow this job (already secured, key
    /// blocks in use, …).
    func checkEFusesReady(_ run: Provisioner.Run, _ p: Provisioner) throws
    /// Preflight: the safety rules' error findings on the plan with this chip's facts.
    func preflightErrors(_ run: Provisioner.Run, entries: [DevicePreflight.Entry], sdkconfigValues: [String: String],
                         partitionTableOffset: Int) -> [String]
    /// Host mode: a flash-encryption key is already in eFuse (burned by an interrupted run).
    func hostKeyBurned(_ run: Provisioner.Run) -> Bool
    /// `--resume`, host mode: a killed run's write armed the chip (all ciphertext written, then
    /// encryption switched on) before the step was recorded ok.
    func armedByInterruptedWrite(_ run: Provisioner.Run) -> Bool
    /// Bytes of a fresh host-mode key.
    func hostKeyLength(_ p: Provisioner) -> Int
    /// Host mode, before the ciphertext is written: the cipher of the device's key — the readable
    /// key an interrupted run burned, or `fresh` (or a new random key) burned now, still
    /// readable. nil: the chip is armed already (the ciphertext was complete), nothing to write.
    func hostCipher(_ run: Provisioner.Run, fresh: [UInt8]?, _ p: Provisioner) throws -> FlashCipher?
    /// Host mode, after the ciphertext: encryption on, the key unreadable and unwritable.
    func arm(_ run: Provisioner.Run, _ p: Provisioner) throws
    /// Repairs a host-mode chip an interrupted run left half-armed (before the first boot).
    func beforeFirstBoot(_ run: Provisioner.Run, _ p: Provisioner) throws
    /// What is wrong with the chip after the first boot (empty: as the flow must leave it).
    func verify(_ run: Provisioner.Run, _ p: Provisioner) -> [String]
    /// The job's final eFuses (fields to all ones, write protections) by name; the step's detail.
    func burnFinal(_ run: Provisioner.Run, _ p: Provisioner) throws -> String
    /// The security-relevant eFuses as recorded in the registry (states, never key material).
    func summary(_ run: Provisioner.Run) -> [String: String]
    /// The final eFuses are burned just before the first boot, because the chip takes no burn
    /// after it (it will be in Secure Download Mode).
    func finalBurnsBeforeFirstBoot(_ p: Provisioner) -> Bool
}

extension ChipSecurityFlow {
    func finalBurnsBeforeFirstBoot(_ p: Provisioner) -> Bool { false }
}

enum ChipSecurityFlows {
    /// The flow for the chip the link identified: the field-map flow when the link reads the
    /// chip's field map, the ESP32 flow for the ESP32.
    static func flow(for facts: LinkFacts, port: String) throws -> any ChipSecurityFlow {
        if facts.fieldMapEFuses != nil, let map = facts.fieldMap { return FieldMapSecurityFlow(map: map) }
        if let map = EFuseFieldMap.named(facts.chip) {
            throw ProvisioningError(.connect, "\(port): the \(FieldMapSecurityFlow.displayName(map.chip)) cannot be provisioned over this link "
                                    + "(it does not read the chip's eFuse field map)",
                                    hint: "provision it as a virtual:DIR device, or with a build whose link supports the chip")
        }
        return ESP32SecurityFlow()
    }
}

// MARK: - ESP32

/// The classic ESP32: the flash-encryption key in BLOCK1 (FLASH_CRYPT_CONFIG 0xF), the Secure
/// Boot V2 digest in BLOCK2 (ABS_DONE_1), FLASH_CRYPT_CNT.
struct ESP32SecurityFlow: ChipSecurityFlow {
    typealias P = Provisioner
    var chip: String { "esp32" }

    func refresh(_ run: Provisioner.Run) throws { run.efuses = try run.link.readEFuses() }

    func identifyDetail(_ run: Provisioner.Run) -> String {
        let e = run.efuses
        return "ABS_DONE_1=\(P.int(e, "ABS_DONE_1")) FLASH_CRYPT_CNT=\(P.int(e, "FLASH_CRYPT_CNT"))"
    }

    func isSecured(_ run: Provisioner.Run) -> Bool {
        let e = run.efuses
        return P.int(e, "ABS_DONE_1") != 0 || P.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1
    }

    func digestMismatch(_ run: Provisioner.Run, recorded: String) -> String? {
        let e = run.efuses
        var chipDigest: String?
        if e.blocks[2].contains(where: { $0 != 0 }) {
            var bytes: [UInt8] = []
            for w in e.blocks[2] { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
            chipDigest = P.hex(bytes)
        }
        return chipDigest != recorded ? "the chip's BLOCK2 does not hold the recorded key digest" : nil
    }

    var securityFields: [String] { P.securityFields }

    func checkEFusesReady(_ run: Provisioner.Run, _ p: Provisioner) throws {
        let job = p.job
        let e = run.efuses
        if P.int(e, "ABS_DONE_1") != 0 || P.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1 {
            throw ProvisioningError(.preflight, "the device is already secured (ABS_DONE_1 or FLASH_CRYPT_CNT set)",
                                    hint: "a secured device cannot be provisioned again")
        }
        if e.blocks[1].contains(where: { $0 != 0 }) && job.mode != .host {
            throw ProvisioningError(.preflight, "BLOCK1 already holds a flash encryption key")
        }
    }

    func preflightErrors(_ run: Provisioner.Run, entries: [DevicePreflight.Entry], sdkconfigValues: [String: String],
                         partitionTableOffset: Int) -> [String] {
        DevicePreflight.errors(entries: entries, efuses: run.efuses, flashSize: run.facts.flashSize,
                               chipRevision: run.facts.chipRevision, sdkconfigValues: sdkconfigValues,
                               partitionTableOffset: partitionTableOffset)
    }

    func hostKeyBurned(_ run: Provisioner.Run) -> Bool { P.keyBlockState(run.efuses).hasPrefix("burned") }

    func armedByInterruptedWrite(_ run: Provisioner.Run) -> Bool {
        P.int(run.efuses, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1 && run.efuses.isReadProtected(bit: 0)
    }

    func hostKeyLength(_ p: Provisioner) -> Int { 32 }

    func hostCipher(_ run: Provisioner.Run, fresh: [UInt8]?, _ p: Provisioner) throws -> FlashCipher? {
        let e = run.efuses
        let cnt = P.int(e, "FLASH_CRYPT_CNT")
        if cnt.nonzeroBitCount % 2 == 1 && e.isReadProtected(bit: 0) {
            try ensureCryptConfig(run, p)
            return nil // crashed after arming: the ciphertext was complete before the key was protected
        }
        var key: [UInt8]
        if e.blocks[1].contains(where: { $0 != 0 }) {
            key = P.keyBytes(e) // burned by an interrupted run, still readable
            try ensureCryptConfig(run, p)
        } else {
            key = fresh ?? (0..<32).map { _ in UInt8.random(in: 0...255) }
            try burn(run, [.flashEncryptionKey(key, protect: false), .field(name: "FLASH_CRYPT_CONFIG", value: "15")])
        }
        let cipher = try FlashCipher(chip: .esp32, key: key, flashCryptConfig: 0xF)
        key = [UInt8](repeating: 0, count: key.count)
        return cipher
    }

    func arm(_ run: Provisioner.Run, _ p: Provisioner) throws {
        // Encryption on (odd count) and the key unreadable and unwritable from now on.
        try burn(run, [.field(name: "FLASH_CRYPT_CNT", value: p.job.release ? "127" : "1"),
                       .readProtect("BLOCK1"), .writeProtect("BLOCK1")])
    }

    func beforeFirstBoot(_ run: Provisioner.Run, _ p: Provisioner) throws { try ensureCryptConfig(run, p) }

    /// Host mode: FLASH_CRYPT_CONFIG must be 0xF, the tweak the ciphertext is made with. A run
    /// killed while the key burn was being programmed can leave BLOCK1 burned and BLOCK0's
    /// FLASH_CRYPT_CONFIG not (found by the soak drill): the chip then decrypts with another
    /// tweak and never boots. Burning the missing bits repairs it (WR_DIS bit 10 permitting).
    func ensureCryptConfig(_ run: Provisioner.Run, _ p: Provisioner) throws {
        guard p.job.mode == .host, !run.efuses.isReadProtected(bit: 3), P.int(run.efuses, "FLASH_CRYPT_CONFIG") != 0xF,
              run.efuses.blocks[1].contains(where: { $0 != 0 }) || run.efuses.isReadProtected(bit: 0) else { return }
        try burn(run, [.field(name: "FLASH_CRYPT_CONFIG", value: "15")])
    }

    func burn(_ run: Provisioner.Run, _ requests: [EFuseBurnRequest]) throws {
        try run.link.burn(requests)
        run.efuses = try run.link.readEFuses()
    }

    func verify(_ run: Provisioner.Run, _ p: Provisioner) -> [String] {
        let e = run.efuses
        var problems: [String] = []
        if p.sdkconfig.secureBootV2 {
            if P.int(e, "ABS_DONE_1") == 0 { problems.append("ABS_DONE_1 is not set") }
            if let want = p.job.secureBootDigest {
                var got: [UInt8] = []
                for w in e.blocks[2] { for i in 0..<4 { got.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
                if got != want { problems.append("BLOCK2 does not hold the signing key's digest") }
            }
        }
        if p.job.mode != .none {
            if P.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 0 { problems.append("FLASH_CRYPT_CNT is even (encryption off)") }
            if !e.isReadProtected(bit: 0) { problems.append("the flash encryption key is readable") }
            if !e.isWriteProtected(bit: 7) { problems.append("the flash encryption key is not write-protected") }
        }
        return problems
    }

    func burnFinal(_ run: Provisioner.Run, _ p: Provisioner) throws -> String {
        let layout = EFuseLayout.esp32
        var requests: [EFuseBurnRequest] = []
        for name in p.job.finalBurn {
            guard let f = layout.field(named: name.uppercased()), f.width <= 32 else {
                throw ProvisioningError(.finalEFuses, "'\(name)' is not a one-word ESP32 eFuse field")
            }
            let all = f.width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(f.width)) - 1
            if run.efuses.integer(f, layout: layout) != all { requests.append(.field(name: f.name, value: String(all))) }
        }
        for name in p.job.finalWriteProtect {
            guard let f = layout.field(named: name.uppercased()), let bit = f.writeProtect else {
                throw ProvisioningError(.finalEFuses, "'\(name)' has no write-protection bit")
            }
            if !run.efuses.isWriteProtected(bit: bit) { requests.append(.writeProtect(f.name)) }
        }
        guard !requests.isEmpty else { return "nothing left to burn" }
        try burn(run, requests)
        return (p.job.finalBurn + p.job.finalWriteProtect.map { "WR_DIS(\($0))" }).joined(separator: ", ")
    }

    func summary(_ run: Provisioner.Run) -> [String: String] { P.efuseSummary(run.efuses) }
}
