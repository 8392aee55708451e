import ESPCore
import SecureBoot

/// The PF rules for chips whose keys live in key blocks with purposes (ESP32-S3, ESP32-C3): Secure
/// Boot V2 digest slots and revocation, SPI_BOOT_CRYPT_CNT and XTS keys, Secure Download Mode and
/// the hardening eFuses. They need ``KeyBlockFuseFacts`` (`preflight --efuse-file`) and stay silent
/// without them; what differs per chip comes from ``ChipSecurityProfile``. See docs/safety-rules.md.
public enum KeyPurposeRules {
    public static let rules: [SafetyRule] = [
        digestNotBurned, digestWrongPurpose, revokedKey, ignoredBlocks, keyBlocksForFirstBoot,
        aggressiveRevoke, spiBootCryptCnt, xtsKey, secureDownloadMode, hardening, firstBootRevocation,
    ]

    static func signedImages(_ ctx: PreflightContext) -> [AnalyzedEntry] {
        ctx.entries.filter { $0.isSigned && ($0.kind == .bootloaderImage || $0.kind == .appImage) }
    }

    static func slotText(_ s: KeyBlockFuseFacts.DigestSlot) -> String {
        "digest slot \(s.slot) (BLOCK_KEY\(s.keyBlock), SECURE_BOOT_DIGEST\(s.slot))"
            + (s.readProtected ? " read-protected" : " = \(s.digest.hexString)") + (s.revoked ? ", REVOKED" : "")
    }

    static func blockText(_ b: SignatureBlockTrust) -> String {
        "signature block \(b.index): key digest \(b.keyDigest)" + (b.honoured ? "" : " (not checked by the chip)")
    }

    // MARK: PF019

    static let digestNotBurned = SafetyRule(
        code: "PF019", name: "digest-slot-mismatch",
        summary: "S3/C3: no signing key of a signed image has its digest in a SECURE_BOOT_DIGESTn key block (or a digest block is read-protected)") { ctx in
        guard let kb = ctx.keyBlocks, kb.secureBootEnabled || !kb.digestSlots.isEmpty else { return [] }
        var out: [Finding] = []
        let slots = kb.digestSlots
        for e in signedImages(ctx) {
            let blocks = e.trust(ctx)
            let honoured = blocks.filter(\.honoured)
            guard !honoured.isEmpty, !honoured.contains(where: { $0.slot != nil }) else { continue }
            let protected = slots.filter(\.readProtected)
            out.append(Finding(code: "PF019", severity: .error, rule: "digest-slot-mismatch",
                message: slots.isEmpty
                    ? "SECURE_BOOT_EN is burned but no key block holds a SECURE_BOOT_DIGESTn: \(e.label) can never verify"
                    : "\(e.label) is signed only with keys whose digests are in no SECURE_BOOT_DIGESTn key block",
                evidence: honoured.map(blockText) + (slots.isEmpty ? ["no key block has purpose SECURE_BOOT_DIGEST0-2"] : slots.map(slotText)),
                explanation: "the ROM (for the bootloader) and the bootloader (for apps) accept a signature block only if its public-key digest equals a digest burned in a key block with purpose SECURE_BOOT_DIGEST0-2"
                    + (protected.isEmpty ? "" : "; a read-protected digest block reads as zeros and matches nothing")
                    + ": the image will not boot.",
                fix: "sign with a key whose digest is burned (espforge secure-boot verify --efuse-file FILE --chip \(ctx.target.chip.name) IMAGE shows the slots), or burn this key's digest into an unused key block (espefuse --chip \(ctx.target.chip.name) burn-key-digest) while SECURE_BOOT_EN is not burned",
                file: e.entry.name, address: e.entry.address, overridable: !kb.secureBootEnabled))
        }
        return out
    }

    // MARK: PF020

    static let digestWrongPurpose = SafetyRule(
        code: "PF020", name: "digest-wrong-purpose",
        summary: "S3/C3: a signing key's digest is burned in a key block whose purpose is not SECURE_BOOT_DIGESTn") { ctx in
        guard let kb = ctx.keyBlocks else { return [] }
        var out: [Finding] = []
        for e in signedImages(ctx) {
            let blocks = e.trust(ctx)
            for b in blocks where b.honoured {
                guard let digest = [UInt8](hexString: b.keyDigest) else { continue }
                for k in kb.keyBlocks where k.digestSlot == nil && k.content == digest {
                    let alsoInSlot = blocks.contains { $0.honoured && $0.slot != nil }
                    let purposeLocked = k.purpose != "USER" || k.purposeWriteProtected
                    out.append(Finding(code: "PF020", severity: alsoInSlot ? .warning : .error, rule: "digest-wrong-purpose",
                        message: "BLOCK_KEY\(k.index) holds the digest of the key that signed \(e.label), but its purpose is \(k.purpose), not SECURE_BOOT_DIGESTn",
                        evidence: [blockText(b), "BLOCK_KEY\(k.index): KEY_PURPOSE_\(k.index) = \(k.purpose), content = \(digest.hexString)"],
                        explanation: "the ROM and the bootloader only trust digests in key blocks whose purpose is SECURE_BOOT_DIGEST0-2; this block is ignored"
                            + (alsoInSlot ? " (the image still verifies through another burned digest slot)." : ", so the image will not boot."),
                        fix: purposeLocked
                            ? "burn the digest into an unused key block with its purpose (espefuse burn-key-digest); BLOCK_KEY\(k.index) is lost for Secure Boot"
                            : "give BLOCK_KEY\(k.index) a digest purpose while KEY_PURPOSE_\(k.index) is still USER and writable (espefuse burn-efuse KEY_PURPOSE_\(k.index) SECURE_BOOT_DIGEST0), or burn the digest into an unused block with espefuse burn-key-digest",
                        file: e.entry.name, address: e.entry.address, overridable: !kb.secureBootEnabled))
                }
            }
        }
        return out
    }

    // MARK: PF021

    static let revokedKey = SafetyRule(
        code: "PF021", name: "revoked-key",
        summary: "S3/C3: a signing key's digest slot is revoked (SECURE_BOOT_KEY_REVOKEn)") { ctx in
        guard let kb = ctx.keyBlocks, !kb.revokedSlots.isEmpty else { return [] }
        var out: [Finding] = []
        for e in signedImages(ctx) {
            let blocks = e.trust(ctx)
            let revoked = blocks.filter { $0.honoured && $0.slotRevoked == true }
            guard !revoked.isEmpty else { continue }
            let live = blocks.filter { $0.honoured && $0.slot != nil && $0.slotRevoked == false }
            out.append(Finding(code: "PF021", severity: live.isEmpty ? .error : .warning, rule: "revoked-key",
                message: live.isEmpty
                    ? "\(e.label) is signed only with revoked keys (slot \(revoked.compactMap(\.slot).map(String.init).joined(separator: ", ")))"
                    : "signature block \(revoked.map { String($0.index) }.joined(separator: ", ")) of \(e.label) uses a revoked key; the image verifies only through block \(live.map { String($0.index) }.joined(separator: ", "))",
                evidence: revoked.map { blockText($0) + " → slot \($0.slot ?? -1), SECURE_BOOT_KEY_REVOKE\($0.slot ?? -1) = 1" }
                    + live.map { blockText($0) + " → slot \($0.slot ?? -1) (not revoked)" },
                explanation: "a revoked digest slot is never trusted again; blocks signed with its key are skipped"
                    + (live.isEmpty ? ", so nothing verifies and the image will not boot." : "."),
                fix: live.isEmpty
                    ? "sign with a key whose slot is not revoked (revocation cannot be undone)"
                    : "re-sign without the revoked key so a leaked old key cannot be mistaken for a live one",
                file: e.entry.name, address: e.entry.address, overridable: live.isEmpty ? !kb.secureBootEnabled : true))
        }
        return out
    }

    // MARK: PF022

    static let ignoredBlocks = SafetyRule(
        code: "PF022", name: "ignored-signature-blocks",
        summary: "signature blocks past the ones the chip checks (ESP32: block 0 only; S3/C3: three)") { ctx in
        var out: [Finding] = []
        for e in signedImages(ctx) {
            let blocks = e.trust(ctx)
            let honouredKeys = Set(blocks.filter(\.honoured).map(\.keyDigest))
            let ignored = blocks.filter { !$0.honoured && $0.crcValid && !honouredKeys.contains($0.keyDigest) }
            guard !ignored.isEmpty else { continue }
            let limit = ctx.honouredBlocks
            out.append(Finding(code: "PF022", severity: .warning, rule: "ignored-signature-blocks",
                message: "\(e.label) has signature block(s) \(ignored.map { String($0.index) }.joined(separator: ", ")) that \(ctx.target.chip.displayName) never checks",
                evidence: ignored.map(blockText) + ["\(ctx.target.chip.displayName) checks " + (limit == 1 ? "block 0 only" : "blocks 0-\(limit - 1)")],
                explanation: "a key that appears only in an ignored block is not a working key for this chip: rotating to it later would leave no image it accepts.",
                fix: limit == 1 ? "sign with the trusted key first (block 0)" : "keep every key the chip should accept in the first \(limit) blocks",
                file: e.entry.name, address: e.entry.address, overridable: true))
        }
        return out
    }

    // MARK: PF023

    static let keyBlocksForFirstBoot = SafetyRule(
        code: "PF023", name: "key-blocks-exhausted",
        summary: "S3/C3: not enough unused key blocks for the digests and XTS key the first boot must burn") { ctx in
        guard let kb = ctx.keyBlocks, let profile = ctx.security, let sdk = ctx.sdk else { return [] }
        var needs: [String] = []
        if sdk.secureBootV2, !kb.secureBootEnabled, kb.digestSlots.isEmpty, let bl = ctx.bootloader {
            let keys = Set(ctx.honouredKeyDigests(bl))
            if !keys.isEmpty { needs += Array(repeating: "a SECURE_BOOT_DIGEST block (bootloader signing key)", count: keys.count) }
        }
        let anyXTS = kb.keyBlocks.contains { !$0.empty && profile.xtsPurposes.contains($0.purpose) }
        if sdk.flashEncryption, !kb.flashEncryptionEnabled, !anyXTS, let scheme = configuredScheme(sdk, profile) {
            needs += scheme.purposes.map { "a \($0) block (\(scheme.name) key)" }
        }
        let unused = kb.keyBlocks.filter(\.unused)
        guard needs.count > unused.count else { return [] }
        return [Finding(code: "PF023", severity: .error, rule: "key-blocks-exhausted",
            message: "the first boot must burn \(needs.count) key block(s) but only \(unused.count) of 6 are unused",
            evidence: needs.map { "needs \($0)" } + kb.keyBlocks.map { "BLOCK_KEY\($0.index): \($0.purpose), \($0.unused ? "unused" : "in use")" },
            explanation: "with Secure Boot and flash encryption enabled by the bootloader, each bootloader signing key's digest and each half of the flash-encryption key takes one key block; with none left the bootloader stops and the chip does not boot.",
            fix: "sign the bootloader with fewer keys, or burn the digests/key on the host first (espefuse burn-key-digest / burn-key) into the blocks that are left",
            overridable: true)]
    }

    /// The XTS scheme the sdkconfig selects (AES-128 when it does not say).
    static func configuredScheme(_ sdk: SDKConfig, _ profile: ChipSecurityProfile) -> ChipSecurityProfile.XTSKeyScheme? {
        if let s = profile.xtsSchemes.first(where: { sdk.isEnabled($0.sdkconfigOption) }) { return s }
        if sdk.isEnabled(ChipSecurityProfile.aes256.sdkconfigOption) { return nil }
        return profile.xtsSchemes.first
    }

    // MARK: PF024

    static let aggressiveRevoke = SafetyRule(
        code: "PF024", name: "aggressive-revoke",
        summary: "S3/C3: SECURE_BOOT_AGGRESSIVE_REVOKE and a signature block with a trusted key that fails to verify (its slot would be revoked)") { ctx in
        guard let kb = ctx.keyBlocks, kb.aggressiveRevoke else { return [] }
        var out: [Finding] = []
        for e in signedImages(ctx) {
            let blocks = e.trust(ctx).filter(\.honoured)
            let firstGood = blocks.firstIndex { $0.trusted }
            for (i, b) in blocks.enumerated() where b.slot != nil && b.slotRevoked == false && !b.verifies {
                let reached = firstGood.map { i < $0 } ?? true
                var why: [String] = []
                if !b.imageDigestMatches { why.append("the image digest does not match the content") }
                if b.signatureValid != true { why.append("the signature does not verify") }
                out.append(Finding(code: "PF024", severity: reached ? .error : .warning, rule: "aggressive-revoke",
                    message: "signature block \(b.index) of \(e.label) is made with the key in digest slot \(b.slot ?? -1) but fails to verify, and aggressive revocation is on",
                    evidence: [blockText(b) + ": " + why.joined(separator: "; "), "SECURE_BOOT_AGGRESSIVE_REVOKE = 1"]
                        + (reached ? [] : ["block \(blocks[firstGood ?? 0].index) verifies first; block \(b.index) is reached only if the chip checks past it"]),
                    explanation: "with aggressive revocation the chip burns SECURE_BOOT_KEY_REVOKE\(b.slot ?? -1) as soon as a block signed with that slot's key fails: the key is lost for good, and with it every image signed only with it.",
                    fix: "sign the final image again and flash exactly that file; never write an image whose block for a trusted key is damaged to a chip with aggressive revocation",
                    file: e.entry.name, address: e.entry.address, overridable: false))
            }
        }
        return out
    }

    // MARK: PF025

    static let spiBootCryptCnt = SafetyRule(
        code: "PF025", name: "spi-boot-crypt-cnt",
        summary: "S3/C3: SPI_BOOT_CRYPT_CNT permanently on (0b111) with plaintext, write-protected while off, set without an XTS key, or one enable left") { ctx in
        guard let kb = ctx.keyBlocks, let profile = ctx.security else { return [] }
        var out: [Finding] = []
        let cnt = kb.spiBootCryptCnt
        let state = kb.flashEncryptionEnabled ? "odd: encryption on" : "even: encryption off"
        let evidence = ["\(profile.cryptCounter) = 0b\(String(cnt, radix: 2)) (\(cnt.nonzeroBitCount) of \(profile.cryptCounterBits) bits, \(state))"]
        let wantsFE = ctx.sdk?.flashEncryption ?? false
        let hasKey = profile.xtsSchemes.contains { s in s.purposes.allSatisfy { p in kb.keyBlocks.contains { !$0.empty && $0.purpose == p } } }
        if cnt != 0, !hasKey {
            out.append(Finding(code: "PF025", severity: .error, rule: "spi-boot-crypt-cnt",
                message: "\(profile.cryptCounter) is set but no key block holds a complete flash-encryption key",
                evidence: evidence + ["XTS key purposes burned: " + (kb.burnedPurposes.filter { profile.xtsPurposes.contains($0) }.joined(separator: ", ").nonEmpty ?? "none")],
                explanation: "the bootloader only generates a key while the counter is zero; with the counter set and no key with purpose \(profile.xtsSchemes.map { $0.purposes.joined(separator: " + ") }.joined(separator: " or ")), the chip encrypts and decrypts with no usable key.",
                fix: "burn a key first (espefuse burn-key BLOCK_KEYn KEYFILE \(profile.xtsSchemes[0].purposes[0])), or use another chip"))
        }
        let plaintext = ctx.entries.contains { ($0.isImage || $0.kind == .partitionTable) && !$0.entry.encrypted && !ctx.plan.options.encryptAll }
        if cnt == profile.cryptCounterExhausted, plaintext {
            out.append(Finding(code: "PF025", severity: .error, rule: "spi-boot-crypt-cnt",
                message: "\(profile.cryptCounter) is 0b\(String(cnt, radix: 2)): flash encryption is on for good, and the plan writes plaintext",
                evidence: evidence,
                explanation: "no bit is left to switch encryption off; plaintext images are decrypted into garbage and never boot on this chip.",
                fix: "write ciphertext made with the device's key (host encryption), or --encrypt while \(profile.downloadEncryptDisable) is not burned"))
        }
        if wantsFE, !kb.flashEncryptionEnabled, kb.cryptCntWriteProtected {
            out.append(Finding(code: "PF025", severity: .error, rule: "spi-boot-crypt-cnt",
                message: "flash encryption is configured but \(profile.cryptCounter) is write-protected while off",
                evidence: evidence + ["WR_DIS bit of \(profile.cryptCounter) burned"],
                explanation: "the bootloader cannot switch encryption on and stops.",
                fix: "this chip cannot enable flash encryption; disable CONFIG_SECURE_FLASH_ENC_ENABLED for it or use another chip"))
        }
        if wantsFE, !kb.flashEncryptionEnabled, !kb.cryptCntWriteProtected, cnt.nonzeroBitCount == profile.cryptCounterBits - 1 {
            out.append(Finding(code: "PF025", severity: .warning, rule: "spi-boot-crypt-cnt",
                message: "flash encryption was disabled once; enabling it now burns the last \(profile.cryptCounter) bit",
                evidence: evidence,
                explanation: "after this enable the counter is exhausted: encryption can never be switched off again, and only ciphertext can be written.",
                fix: "nothing to change if that is intended; otherwise disable CONFIG_SECURE_FLASH_ENC_ENABLED for this chip",
                overridable: true))
        }
        return out
    }

    // MARK: PF026

    static let xtsKey = SafetyRule(
        code: "PF026", name: "xts-key",
        summary: "S3/C3: half an XTS-AES-256 key, or the configured XTS key size not what the chip supports or holds") { ctx in
        guard let kb = ctx.keyBlocks, let profile = ctx.security else { return [] }
        var out: [Finding] = []
        let burned = Set(kb.burnedPurposes)
        for s in profile.xtsSchemes where s.purposes.count > 1 {
            let have = s.purposes.filter { burned.contains($0) }
            guard !have.isEmpty, have.count < s.purposes.count else { continue }
            out.append(Finding(code: "PF026", severity: .error, rule: "xts-key",
                message: "only \(have.joined(separator: ", ")) of the \(s.name) key is burned",
                evidence: s.purposes.map { "\($0): \(burned.contains($0) ? "burned" : "missing")" },
                explanation: "an \(s.name) key takes \(s.purposes.count) key blocks with purposes \(s.purposes.joined(separator: " and ")); with one half the chip has no complete key.",
                fix: "burn the other half into an unused key block (espefuse burn-key BLOCK_KEYn KEYFILE \(s.purposes.first { !burned.contains($0) } ?? ""))"))
        }
        guard let sdk = ctx.sdk, sdk.flashEncryption else { return out }
        let all = [ChipSecurityProfile.aes128, ChipSecurityProfile.aes256]
        let configured = all.first { sdk.isEnabled($0.sdkconfigOption) } ?? ChipSecurityProfile.aes128
        if !profile.xtsSchemes.contains(configured) {
            out.append(Finding(code: "PF026", severity: .error, rule: "xts-key",
                message: "the build selects \(configured.name), which \(ctx.target.chip.displayName) does not have",
                evidence: ["\(configured.sdkconfigOption)=y", "\(ctx.target.chip.displayName) supports " + profile.xtsSchemes.map(\.name).joined(separator: ", ")],
                explanation: "the bootloader was built for another chip's key size; it cannot enable flash encryption here.",
                fix: "select \(profile.xtsSchemes.map(\.sdkconfigOption).joined(separator: " or ")) and rebuild"))
            return out
        }
        let other = profile.xtsSchemes.filter { $0 != configured && $0.purposes.allSatisfy { burned.contains($0) } }
        if !configured.purposes.allSatisfy({ burned.contains($0) }), let o = other.first {
            out.append(Finding(code: "PF026", severity: .error, rule: "xts-key",
                message: "the build selects \(configured.name) but the chip holds an \(o.name) key",
                evidence: ["\(configured.sdkconfigOption)=y", "burned: " + o.purposes.joined(separator: ", ")],
                explanation: "the bootloader looks for a key with the purpose(s) of its configured size (\(configured.purposes.joined(separator: ", "))); it does not use the key that is there and tries to generate another one into free blocks.",
                fix: "build with \(o.sdkconfigOption)=y to use the key on the chip",
                overridable: true))
        }
        return out
    }

    // MARK: PF027

    static let secureDownloadMode = SafetyRule(
        code: "PF027", name: "secure-download-mode",
        summary: "S3/C3: ENABLE_SECURITY_DOWNLOAD (Secure Download Mode) forbids flash-size detection, the stub, reading back and verifying") { ctx in
        guard let kb = ctx.keyBlocks, kb.enableSecurityDownload, !kb.disDownloadMode, !ctx.plan.entries.isEmpty else { return [] }
        var out: [Finding] = []
        if ctx.plan.options.size?.lowercased() == "detect" {
            out.append(Finding(code: "PF027", severity: .error, rule: "secure-download-mode",
                message: "--flash-size detect is impossible in Secure Download Mode",
                evidence: ["ENABLE_SECURITY_DOWNLOAD = 1", "write options: --flash-size detect"],
                explanation: "the ROM loader refuses the commands that read the flash id, so the size cannot be detected.",
                fix: "give the real size (--write-flash-size 4MB) or keep the header (--write-flash-size keep)"))
        }
        out.append(Finding(code: "PF027", severity: .warning, rule: "secure-download-mode",
            message: "the target is in Secure Download Mode: the writes cannot be read back or verified",
            evidence: ["ENABLE_SECURITY_DOWNLOAD = 1"],
            explanation: "the ROM loader then only takes flash writes, erases and security-info requests: no stub, no register or flash reads, no MD5, so nothing written can be checked from the host.",
            fix: "check the device by booting it (its console or a self-test) after the write",
            overridable: true))
        return out
    }

    // MARK: PF028

    static let hardening = SafetyRule(
        code: "PF028", name: "secure-boot-hardening",
        summary: "S3/C3: Secure Boot is on but JTAG or direct boot is still open") { ctx in
        guard let kb = ctx.keyBlocks, kb.secureBootEnabled, let profile = ctx.security, !ctx.plan.entries.isEmpty else { return [] }
        let open = profile.hardening.filter { f in !f.isBurned(kb) && !(f.allowedBy.map { ctx.sdk?.isEnabled($0) ?? false } ?? false) }
        guard !open.isEmpty else { return [] }
        return [Finding(code: "PF028", severity: .warning, rule: "secure-boot-hardening",
            message: "Secure Boot is on but \(open.map(\.name).joined(separator: ", ")) \(open.count == 1 ? "is" : "are") not burned",
            evidence: open.map { "\($0.name) = 0" } + ["SECURE_BOOT_EN = 1"],
            explanation: open.map(\.why).joined(separator: "; ") + ". ESP-IDF burns these when it enables Secure Boot in release mode.",
            fix: "burn them (espefuse burn-efuse \(open.map { "\($0.name) 1" }.joined(separator: " "))) unless debugging access is intended (CONFIG_SECURE_BOOT_ALLOW_JTAG)",
            overridable: true)]
    }
}

extension KeyPurposeRules {
    // MARK: PF029

    /// When the bootloader enables Secure Boot it counts the digests it trusts (the ones it burns
    /// from its own signature blocks, or the live pre-loaded slots) and burns
    /// SECURE_BOOT_KEY_REVOKEn for every slot index from that count to 2 (ESP-IDF v5,
    /// `check_and_generate_secure_boot_keys`).
    static let firstBootRevocation = SafetyRule(
        code: "PF029", name: "first-boot-revocation",
        summary: "S3/C3: enabling Secure Boot revokes the digest slots past the trusted count: no later key rotation, or a used slot revoked") { ctx in
        guard let kb = ctx.keyBlocks, let profile = ctx.security, ctx.sdk?.secureBootV2 == true, !kb.secureBootEnabled,
              let bl = ctx.bootloader, bl.isSigned else { return [] }
        let slots = kb.digestSlots
        let live = slots.filter { !$0.revoked }
        let count = slots.isEmpty ? Set(ctx.honouredKeyDigests(bl)).count : live.count
        guard count > 0, count < profile.digestSlots else { return [] }
        let doomed = Array(count..<profile.digestSlots)
        let hit = live.filter { doomed.contains($0.slot) }
        let already = Set(kb.revokedSlots)
        let newly = doomed.filter { !already.contains($0) }
        guard !newly.isEmpty else { return [] }
        if !hit.isEmpty {
            return [Finding(code: "PF029", severity: .error, rule: "first-boot-revocation",
                message: "enabling Secure Boot would revoke digest slot \(hit.map { String($0.slot) }.joined(separator: ", ")), which holds a key digest",
                evidence: slots.map(slotText) + ["\(count) live digest(s): the bootloader revokes slot \(newly.map(String.init).joined(separator: ", "))"],
                explanation: "the bootloader revokes the slots numbered from the count of trusted digests up to 2, by number, not by use: a digest burned in a higher slot than the count is revoked with them, and images signed with its key stop booting.",
                fix: "burn pre-loaded digests into the lowest slots (SECURE_BOOT_DIGEST0 first, no gaps), or revoke the stray slot on purpose before the first boot",
                file: bl.entry.name, address: bl.entry.address, overridable: false)]
        }
        return [Finding(code: "PF029", severity: .warning, rule: "first-boot-revocation",
            message: "the first boot will revoke digest slot \(newly.map(String.init).joined(separator: ", ")): only \(count) key(s) can ever sign for this chip",
            evidence: (slots.isEmpty ? ["the bootloader is signed with \(count) key(s); no digest is burned yet"] : slots.map(slotText))
                + ["SECURE_BOOT_KEY_REVOKE\(newly.map(String.init).joined(separator: ", ")) will be burned"],
            explanation: "when the bootloader enables Secure Boot it revokes every digest slot it does not fill, so no key can be added for rotation later.",
            fix: "to keep rotation possible, sign the bootloader with every key you may rotate to (up to \(profile.digestSlots)) before the first boot",
            file: bl.entry.name, address: bl.entry.address, overridable: true)]
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
