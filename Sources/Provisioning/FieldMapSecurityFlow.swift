import EFuse
import ESPCore
import FlashEncryption
import Flasher
import Foundation

/// ESP32-S3 / ESP32-C3: six key blocks (BLOCK_KEY0…5) with KEY_PURPOSE_n, SECURE_BOOT_EN,
/// SPI_BOOT_CRYPT_CNT (1 development, 0b111 release), XTS-AES flash encryption (the S3 also
/// XTS-AES-256 with the XTS_AES_256_KEY_1/_2 pair). Every burn goes through the chip's planner
/// (``FieldMapBurnOperation``) on the link, as `espefuse` would burn it.
///
/// Host mode keeps the ESP32's order, so a killed run stays resumable: a fresh key into the first
/// free key block with its purpose but still readable, the ciphertext, then arming
/// (SPI_BOOT_CRYPT_CNT, then the key block read- and write-protected). The count is burned after
/// the last byte of ciphertext, so an odd count with an XTS key in eFuse means the write was
/// complete; protections a killed run did not reach are burned on resume.
struct FieldMapSecurityFlow: ChipSecurityFlow {
    let map: EFuseFieldMap
    var chip: String { map.chip }

    static func displayName(_ chip: String) -> String { Provisioner.displayName(chip) }

    /// Fields recorded in the registry (those the chip has).
    static let summaryFields = ["SECURE_BOOT_EN", "SPI_BOOT_CRYPT_CNT", "SECURE_BOOT_AGGRESSIVE_REVOKE",
                                "SECURE_BOOT_KEY_REVOKE0", "SECURE_BOOT_KEY_REVOKE1", "SECURE_BOOT_KEY_REVOKE2",
                                "DIS_DOWNLOAD_MANUAL_ENCRYPT", "ENABLE_SECURITY_DOWNLOAD", "DIS_DOWNLOAD_MODE",
                                "DIS_USB_JTAG", "DIS_PAD_JTAG", "SOFT_DIS_JTAG", "DIS_DIRECT_BOOT",
                                "DIS_DOWNLOAD_ICACHE", "DIS_DOWNLOAD_DCACHE", "DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE",
                                "DIS_USB_OTG_DOWNLOAD_MODE"]

    func words(_ run: Provisioner.Run) -> EFuseBlockWords { run.words ?? EFuseBlockWords(map: map) }
    func int(_ run: Provisioner.Run, _ name: String) -> UInt64 { map.field(named: name).map { words(run).integer($0) } ?? 0 }
    func keyBlocks(_ run: Provisioner.Run) -> [EFuseKeyBlockState] { EFuseFieldMapSummary(words: words(run), map: map).keyBlocks }
    var cryptCount: String { "SPI_BOOT_CRYPT_CNT" }
    func encryptionOn(_ run: Provisioner.Run) -> Bool { int(run, cryptCount).nonzeroBitCount % 2 == 1 }

    /// Key blocks holding (or reserved for) a flash-encryption key.
    func xtsBlocks(_ run: Provisioner.Run) -> [EFuseKeyBlockState] {
        keyBlocks(run).filter { $0.purposeName.hasPrefix("XTS_AES_") }
    }

    func digestBlocks(_ run: Provisioner.Run) -> [EFuseKeyBlockState] {
        keyBlocks(run).filter { $0.purposeName.hasPrefix("SECURE_BOOT_DIGEST") && !$0.empty }
    }

    /// Empty, readable, writable blocks with purpose USER and a writable purpose.
    func freeBlocks(_ run: Provisioner.Run) -> [EFuseKeyBlockState] {
        keyBlocks(run).filter { $0.empty && $0.purpose == 0 && !$0.readProtected && !$0.writeProtected && !$0.purposeWriteProtected }
    }

    func aes256(_ p: Provisioner) -> Bool { p.sdkconfig.flashEncryptionAES256 && map.purposeValue("XTS_AES_256_KEY_1") != nil }

    // MARK: ChipSecurityFlow

    func refresh(_ run: Provisioner.Run) throws {
        do {
            run.words = try run.link.readFieldMapEFuses()
            run.secureDownloadInfo = nil
        } catch {
            // A release first boot with CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE leaves the ROM
            // refusing register reads; GET_SECURITY_INFO still answers (flags, count, purposes).
            guard let info = (try? run.link.securityInfo()) ?? nil, info.secureDownloadMode else { throw error }
            run.secureDownloadInfo = info
        }
    }

    /// Release builds that turn on Secure Download Mode: the chip refuses eFuse burns after its
    /// first boot, so the final ones go before it.
    func finalBurnsBeforeFirstBoot(_ p: Provisioner) -> Bool { p.sdkconfig.secureROMDownload }

    func identifyDetail(_ run: Provisioner.Run) -> String {
        let used = keyBlocks(run).filter { !$0.empty || $0.purpose != 0 }.map { "\(map.blockNames[$0.block])=\($0.purposeName)" }
        return "SECURE_BOOT_EN=\(int(run, "SECURE_BOOT_EN")) SPI_BOOT_CRYPT_CNT=\(int(run, cryptCount))"
            + (used.isEmpty ? ", key blocks empty" : ", " + used.joined(separator: " "))
    }

    func isSecured(_ run: Provisioner.Run) -> Bool { int(run, "SECURE_BOOT_EN") != 0 || encryptionOn(run) }

    func digestMismatch(_ run: Provisioner.Run, recorded: String) -> String? {
        digestBlocks(run).contains { $0.digest == recorded } ? nil
            : "no SECURE_BOOT_DIGESTn key block of the chip holds the recorded key digest"
    }

    var securityFields: [String] { Self.summaryFields.filter { map.field(named: $0) != nil } }

    func checkEFusesReady(_ run: Provisioner.Run, _ p: Provisioner) throws {
        let job = p.job
        let name = Self.displayName(chip)
        if isSecured(run) {
            throw ProvisioningError(.preflight, "the device is already secured (SECURE_BOOT_EN or SPI_BOOT_CRYPT_CNT set)",
                                    hint: "a secured device cannot be provisioned again")
        }
        let xts = xtsBlocks(run)
        if let k = xts.first, job.mode != .host {
            throw ProvisioningError(.preflight, "\(map.blockNames[k.block]) already holds a flash encryption key (\(k.purposeName))",
                                    hint: "an \(name) with a pre-burned key is provisioned with [flash_encryption] mode = \"host\" or set aside")
        }
        if let want = job.secureBootDigest.map(Provisioner.hex) {
            for d in digestBlocks(run) where d.digest != want {
                throw ProvisioningError(.preflight, "\(map.blockNames[d.block]) holds the digest of another Secure Boot key (\(d.purposeName))",
                                        hint: "the bootloader would trust that key too; set the device aside")
            }
        }
        // Key blocks the flow needs: the XTS key (two on the S3 with AES-256) and the digest.
        var needed = 0
        if job.mode != .none && xts.isEmpty { needed += aes256(p) ? 2 : 1 }
        if job.secureBootDigest != nil && !digestBlocks(run).contains(where: { $0.digest == job.secureBootDigest.map(Provisioner.hex) }) {
            needed += 1
        }
        let free = freeBlocks(run).count
        if free < needed {
            throw ProvisioningError(.preflight, "the \(name) has \(free) free key block(s), the job needs \(needed)",
                                    hint: "a key block in use cannot be erased; set the device aside")
        }
    }

    func preflightErrors(_ run: Provisioner.Run, entries: [DevicePreflight.Entry], sdkconfigValues: [String: String],
                         partitionTableOffset: Int) -> [String] {
        DevicePreflight.errors(entries: entries, words: words(run), map: map, flashSize: run.facts.flashSize,
                               chipRevision: run.facts.chipRevision, sdkconfigValues: sdkconfigValues,
                               partitionTableOffset: partitionTableOffset)
    }

    func hostKeyBurned(_ run: Provisioner.Run) -> Bool { !xtsBlocks(run).isEmpty }

    func armedByInterruptedWrite(_ run: Provisioner.Run) -> Bool { encryptionOn(run) && hostKeyBurned(run) }

    func hostKeyLength(_ p: Provisioner) -> Int { aes256(p) ? 64 : 32 }

    func hostCipher(_ run: Provisioner.Run, fresh: [UInt8]?, _ p: Provisioner) throws -> FlashCipher? {
        if armedByInterruptedWrite(run) {
            try protectKey(run)
            return nil // killed after arming: the ciphertext was complete before the count was burned
        }
        guard let spec = ChipSpec.named(chip) else {
            throw ProvisioningError(.write, "no flash encryption facts for the \(Self.displayName(chip))")
        }
        var key: [UInt8]
        let xts = xtsBlocks(run).sorted { $0.purposeName < $1.purposeName }
        if !xts.isEmpty {
            // Burned by an interrupted run, still readable: the ciphertext is made with it again.
            if let hidden = xts.first(where: { $0.readProtected }) {
                throw ProvisioningError(.write, "\(map.blockNames[hidden.block]) holds a read-protected flash encryption key "
                                        + "and encryption is off: the key cannot be reused",
                                        hint: "nothing was written; set the device aside (its key is unknown)")
            }
            key = []
            for k in xts {
                guard let f = map.field(named: map.blockNames[k.block]) else { continue }
                key += words(run).bytes(of: f).reversed()
            }
            guard key.count == hostKeyLength(p) else {
                throw ProvisioningError(.write, "the flash encryption key in eFuse is \(key.count * 8) bits, the build expects "
                                        + "\(hostKeyLength(p) * 8) (CONFIG_SECURE_FLASH_ENCRYPTION_AES256)")
            }
        } else {
            key = fresh ?? (0..<hostKeyLength(p)).map { _ in UInt8.random(in: 0...255) }
            // XTS keys cannot go into BLOCK_KEY5 (KEY_PURPOSE_5 erratum).
            guard let block = freeBlocks(run).first(where: { $0.index < 5 }) else {
                throw ProvisioningError(.write, "no free key block for the flash encryption key")
            }
            let purpose = key.count == 64 ? "XTS_AES_256_KEY" : "XTS_AES_128_KEY"
            try burn(run, .burnKeys([FieldMapBurnPlanner.KeyRequest(block: map.blockNames[block.block], data: key, purpose: purpose)],
                                    noReadProtect: true, noWriteProtect: true))
        }
        let cipher = try FlashCipher(chip: spec, key: key)
        key = [UInt8](repeating: 0, count: key.count)
        return cipher
    }

    func arm(_ run: Provisioner.Run, _ p: Provisioner) throws {
        // Release: all three count bits and DIS_DOWNLOAD_MANUAL_ENCRYPT, what makes ESP-IDF
        // report RELEASE mode (the bootloader burns it itself only when it encrypts in place;
        // ESP-IDF's host-based workflow burns it from the host). One BLOCK0 program cycle.
        var fields = [(name: cryptCount, value: p.job.release ? "7" : "1")]
        if p.job.release, map.field(named: "DIS_DOWNLOAD_MANUAL_ENCRYPT") != nil, int(run, "DIS_DOWNLOAD_MANUAL_ENCRYPT") == 0 {
            fields.append((name: "DIS_DOWNLOAD_MANUAL_ENCRYPT", value: "1"))
        }
        try burn(run, .burn(fields))
        try protectKey(run)
    }

    /// Read- and write-protects the XTS key block(s) that are not yet (after the count is odd).
    func protectKey(_ run: Provisioner.Run) throws {
        let xts = xtsBlocks(run)
        let unread = xts.filter { !$0.readProtected }.map { map.blockNames[$0.block] }
        if !unread.isEmpty { try burn(run, .readProtect(unread)) }
        let unlocked = xtsBlocks(run).filter { !$0.writeProtected }.map { map.blockNames[$0.block] }
        if !unlocked.isEmpty { try burn(run, .writeProtect(unlocked)) }
    }

    func beforeFirstBoot(_ run: Provisioner.Run, _ p: Provisioner) throws {
        guard p.job.mode == .host, armedByInterruptedWrite(run) else { return }
        try protectKey(run)
    }

    func burn(_ run: Provisioner.Run, _ operation: FieldMapBurnOperation) throws {
        try run.link.burnFieldMap(operation)
        run.words = try run.link.readFieldMapEFuses()
    }

    func verify(_ run: Provisioner.Run, _ p: Provisioner) -> [String] {
        if let info = run.secureDownloadInfo { return verify(info, p) }
        var problems: [String] = []
        if p.sdkconfig.secureBootV2 {
            if int(run, "SECURE_BOOT_EN") == 0 { problems.append("SECURE_BOOT_EN is not set") }
            if let want = p.job.secureBootDigest.map(Provisioner.hex), !digestBlocks(run).contains(where: { $0.digest == want }) {
                problems.append("no SECURE_BOOT_DIGESTn key block holds the signing key's digest")
            }
        }
        if p.job.mode != .none {
            let cnt = int(run, cryptCount)
            if cnt.nonzeroBitCount % 2 == 0 { problems.append("SPI_BOOT_CRYPT_CNT is even (encryption off)") }
            else if p.job.release && cnt != 0b111 { problems.append("SPI_BOOT_CRYPT_CNT is \(cnt), release mode sets all three bits") }
            let xts = xtsBlocks(run)
            if xts.isEmpty { problems.append("no key block holds an XTS-AES flash encryption key") }
            for k in xts {
                if !k.readProtected { problems.append("the flash encryption key (\(map.blockNames[k.block])) is readable") }
                if !k.writeProtected { problems.append("the flash encryption key (\(map.blockNames[k.block])) is not write-protected") }
            }
        }
        return problems
    }

    /// What can be checked on a chip in Secure Download Mode (GET_SECURITY_INFO): Secure Boot on
    /// with a digest slot, encryption on (all three bits in release), an XTS key purpose. The
    /// digest itself and the key's protection cannot be read any more; the ROM has checked the
    /// bootloader against the burned digest on the boot that just succeeded.
    func verify(_ info: LoaderSecurityInfo, _ p: Provisioner) -> [String] {
        var problems: [String] = []
        let purposes = info.keyPurposes.compactMap { map.purposeName($0) }
        if p.sdkconfig.secureBootV2 {
            if !info.secureBootEnabled { problems.append("SECURE_BOOT_EN is not set (GET_SECURITY_INFO)") }
            if !purposes.contains(where: { $0.hasPrefix("SECURE_BOOT_DIGEST") }) {
                problems.append("no key block has a SECURE_BOOT_DIGESTn purpose (GET_SECURITY_INFO)")
            }
        }
        if p.job.mode != .none {
            if !info.flashEncryptionEnabled { problems.append("SPI_BOOT_CRYPT_CNT is even (encryption off)") }
            else if p.job.release && info.cryptCount != 0b111 {
                problems.append("SPI_BOOT_CRYPT_CNT is \(info.cryptCount), release mode sets all three bits")
            }
            if !purposes.contains(where: { $0.hasPrefix("XTS_AES_") }) {
                problems.append("no key block has an XTS-AES purpose (GET_SECURITY_INFO)")
            }
        }
        return problems
    }

    func burnFinal(_ run: Provisioner.Run, _ p: Provisioner) throws -> String {
        let name = Self.displayName(chip)
        var pairs: [(name: String, value: String)] = []
        for raw in p.job.finalBurn {
            guard let f = map.field(named: raw) else {
                throw ProvisioningError(.finalEFuses, "'\(raw)' is not an eFuse field of the \(name)",
                                        hint: "name the \(name)'s fields as `espforge efuse summary --chip \(chip)` lists them (e.g. DIS_PAD_JTAG)")
            }
            guard f.block == 0 || !(map.firstKeyBlock..<map.firstKeyBlock + EFuseFieldMap.keyBlockCount).contains(f.block),
                  f.width <= 32 else {
                throw ProvisioningError(.finalEFuses, "'\(raw)' is not a one-word \(name) eFuse field")
            }
            let all = f.width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(f.width)) - 1
            guard words(run).integer(f) != all else { continue }
            if let bit = f.writeProtect ?? (f.block == 0 ? nil : map.blockWriteProtectBits[f.block]), words(run).isWriteProtected(bit: bit) {
                throw ProvisioningError(.finalEFuses, "'\(f.name)' can no longer be burned: WR_DIS bit \(bit) is set (the bootloader "
                                        + "write-protects it when it enables flash encryption or Secure Boot)",
                                        hint: "let the bootloader burn it (release mode, CONFIG_SECURE_* options) or leave it out of [efuse] burn")
            }
            pairs.append((f.name, String(all)))
        }
        var protect: [String] = []
        for raw in p.job.finalWriteProtect {
            let bit: Int?
            if let f = map.field(named: raw) {
                bit = f.writeProtect ?? (f.block == 0 ? nil : map.blockWriteProtectBits[f.block])
            } else if let b = FieldMapBurnPlanner.block(named: raw, map: map) {
                bit = map.blockWriteProtectBits[b]
            } else {
                throw ProvisioningError(.finalEFuses, "'\(raw)' is not an eFuse field or block of the \(name)")
            }
            guard let bit else { throw ProvisioningError(.finalEFuses, "'\(raw)' has no write-protection bit") }
            if !words(run).isWriteProtected(bit: bit) { protect.append(raw.uppercased()) }
        }
        guard !pairs.isEmpty || !protect.isEmpty else { return "nothing left to burn" }
        if !pairs.isEmpty { try burn(run, .burn(pairs)) }
        if !protect.isEmpty { try burn(run, .writeProtect(protect)) }
        return (p.job.finalBurn + p.job.finalWriteProtect.map { "WR_DIS(\($0))" }).joined(separator: ", ")
    }

    /// Numeric fields, and per key block a state (never its contents): `empty`,
    /// `SECURE_BOOT_DIGEST0, burned, write-protected`, `XTS_AES_128_KEY, burned, read-protected,
    /// write-protected`.
    func summary(_ run: Provisioner.Run) -> [String: String] {
        var out = Self.summary(words: words(run), map: map)
        if let info = run.secureDownloadInfo {
            // Secure Download Mode: what GET_SECURITY_INFO says overrides the last full reading.
            out["SECURE_BOOT_EN"] = info.secureBootEnabled ? "1" : "0"
            out[cryptCount] = String(info.cryptCount)
            out["SECURE_BOOT_AGGRESSIVE_REVOKE"] = info.aggressiveRevoke ? "1" : "0"
            out["ENABLE_SECURITY_DOWNLOAD"] = "1"
            for slot in 0..<3 { out["SECURE_BOOT_KEY_REVOKE\(slot)"] = info.revokedDigestSlots.contains(slot) ? "1" : "0" }
            for k in keyBlocks(run) where k.index < info.keyPurposes.count {
                let purpose = info.keyPurposes[k.index]
                guard purpose != k.purpose, let name = map.purposeName(purpose) else { continue }
                out[map.blockNames[k.block]] = purpose == 0 ? "empty" : "\(name), burned"
            }
        }
        return out
    }

    /// The summary of eFuses as the chip's read registers show them (``summary(_:)``; the soak
    /// audit compares a record with the chip's efuse.bin through it).
    static func summary(words: EFuseBlockWords, map: EFuseFieldMap) -> [String: String] {
        var out: [String: String] = [:]
        for name in summaryFields { if let f = map.field(named: name) { out[name] = String(words.integer(f)) } }
        for k in EFuseFieldMapSummary(words: words, map: map).keyBlocks {
            out[map.blockNames[k.block]] = Self.keyBlockState(k)
        }
        return out
    }

    static func keyBlockState(_ k: EFuseKeyBlockState) -> String {
        if k.empty && k.purpose == 0 && !k.readProtected && !k.writeProtected { return "empty" }
        var parts = [k.purposeName]
        if !k.empty || (k.readProtected && k.purpose != 0) { parts.append("burned") }
        else if k.readProtected { parts.append("contents unknown") }
        else { parts.append("empty") }
        if k.readProtected { parts.append("read-protected") }
        if k.writeProtected { parts.append("write-protected") }
        return parts.joined(separator: ", ")
    }
}
