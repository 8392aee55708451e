import ESPCore

/// The manifest and its ESP-IDF build disagree about how the firmware was built (chip, Secure
/// Boot, flash encryption, partition table offset). The message names both files.
public struct BuildMismatchError: Error, DiagnosticConvertible, Equatable, Sendable {
    /// One line per disagreement.
    public var problems: [String]
    public var manifestFile: String
    public var sdkconfigFile: String
    public var hint: String?

    public var diagnostic: Diagnostic {
        Diagnostic("\(manifestFile) does not match the build's \(sdkconfigFile): " + problems.joined(separator: "; "),
                   hint: hint)
    }
}

extension Manifest {
    /// Checks what the manifest states against the build's sdkconfig: the chip, Secure Boot V2
    /// on/off (a `[signing]` table ⇔ `CONFIG_SECURE_BOOT_V2_ENABLED`), flash encryption on/off
    /// and release/development mode, that `presigned` images really are signed by the build
    /// (`CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES`) and that external signatures are not asked
    /// for images the build already signed, and the partition table offset.
    ///
    /// Call it on the manifest as written (before ``resolvingImages(from:)``): images the
    /// manifest lists itself are not the build's, so the build's signing does not apply to them.
    /// `manifestFile` and `sdkconfigFile` are only used in the message.
    public func checkConsistency(with build: IDFBuild, manifestFile: String, sdkconfigFile: String) throws(BuildMismatchError) {
        var problems: [String] = []
        var hints: [String] = []
        let sdk = build.sdkconfig
        func state(_ key: String) -> String { sdk[key] == "y" ? "\(key)=y" : "\(key) unset" }

        if chip.type != build.chip {
            problems.append("the manifest's chip is `\(chip.type)`, the build is for `\(build.chip)`")
        }

        let signs = signing != nil
        if signs != build.secureBootV2 {
            if signs {
                problems.append("the manifest signs for Secure Boot V2 ([signing]), but sdkconfig has \(state("CONFIG_SECURE_BOOT_V2_ENABLED"))")
                hints.append("enable Secure Boot V2 in menuconfig and rebuild, or remove [signing]")
            } else {
                problems.append("sdkconfig has CONFIG_SECURE_BOOT_V2_ENABLED=y, but the manifest has no [signing] (the bootloader would refuse unsigned images)")
                hints.append("add [signing] with presigned = true (CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES), key = \"…\" or external signature files")
            }
        }

        // Images the manifest does not list come from the build, signed as the build signed them.
        let fromBuild = images.bootloader == nil || images.app == nil
        switch signing {
        case .presigned? where fromBuild && build.secureBootV2 && !build.signedBinaries:
            problems.append("the manifest says presigned = true, but sdkconfig has CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES unset (the build's images are unsigned)")
            hints.append("sign them with [signing] key = \"…\" or external signature files, or build with signed binaries")
        case .external? where fromBuild && build.signedBinaries:
            problems.append("the manifest gives external signatures, but sdkconfig has CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y (the build's images are already signed)")
            hints.append("use presigned = true, or list the unsigned images under [images.bootloader] and [images.app]")
        default: break
        }

        let encrypts = flashEncryption.mode != .none
        if encrypts != build.flashEncryption {
            if encrypts {
                problems.append("the manifest says flash encryption `\(flashEncryption.mode.rawValue)`, but sdkconfig has \(state("CONFIG_SECURE_FLASH_ENC_ENABLED"))")
                hints.append("enable flash encryption in menuconfig and rebuild, or set [flash_encryption] mode = \"none\"")
            } else {
                problems.append("the manifest says flash encryption `none`, but sdkconfig has CONFIG_SECURE_FLASH_ENC_ENABLED=y (the bootloader would encrypt flash on first boot)")
                hints.append("set [flash_encryption] mode = \"on-chip\" or \"host\"")
            }
        } else if encrypts && flashEncryption.release != build.flashEncryptionRelease {
            problems.append("the manifest says flash encryption release = \(flashEncryption.release), but sdkconfig has "
                            + state("CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE")
                            + (build.flashEncryptionRelease ? " (release mode)" : " (development mode)"))
            hints.append("set [flash_encryption] release = \(build.flashEncryptionRelease) or change the mode in menuconfig")
        }

        if let text = sdk["CONFIG_PARTITION_TABLE_OFFSET"], let want = NumberParsing.integer(text),
           let table = images.partitionTable ?? build.images.partitionTable, table.offset != want {
            problems.append("the partition table is written at \(NumberParsing.hex(table.offset, width: 0)), but sdkconfig has "
                            + "CONFIG_PARTITION_TABLE_OFFSET=\(text) (where the bootloader looks for it)")
            hints.append("give [images.partition_table] offset = \(text)")
        }

        guard problems.isEmpty else {
            throw BuildMismatchError(problems: problems, manifestFile: manifestFile, sdkconfigFile: sdkconfigFile,
                                     hint: hints.isEmpty ? nil : hints.joined(separator: "; "))
        }
    }
}
