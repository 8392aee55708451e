import BootSimulator
import EFuse
import ESPCore
import Foundation
import KeyCustody
import Manifest
import NVS
import Partitions
import Provisioning
import Registry
import SecureBoot

/// Turns a manifest and the files it names into a ``ProvisioningJob`` (used by `provision`, `station` and `demo`).
///
/// Images are the manifest's `[images.*]` entries; with `[build] dir` the ones it does not list
/// come from the ESP-IDF build (flasher_args.json), and the simulator's security options come from
/// the build's sdkconfig, which must agree with the manifest's `[signing]` and `[flash_encryption]`.
/// Signing: a private key (espforge signs), external signature files (checked against the images
/// and the public key before anything is written), or images that already carry their signature.
extension ProvisionSetup {
    /// Opens a `pkcs11:` signing key named by the manifest: (URI, the manifest's pkcs11_module,
    /// the manifest's PIN file). The caller decides where a PIN may come from (file, environment,
    /// a prompt on a terminal).
    public typealias TokenSigner = @Sendable (_ uri: String, _ manifestModule: String?, _ manifestPINFile: String?) throws -> any ImageSigningKey

    /// Reads the manifest at `manifestPath` and everything it names. `tokenSigner` opens a
    /// `pkcs11:` [signing] key (nil: such a manifest is refused); `escrowKey` overrides
    /// [escrow] public_key.
    public static func load(manifestPath: String, tokenSigner: TokenSigner? = nil, escrowKey: String? = nil) throws -> Loaded {
        let bytes = try FileIO.read(manifestPath, limit: .configText)
        var m: Manifest
        do { m = try Manifest.parse(bytes) } catch { throw FileContextError(file: manifestPath, underlying: error) }
        let dir = (manifestPath as NSString).deletingLastPathComponent
        func path(_ p: String) -> String { IDFBuild.normalize(Manifest.resolve(p, relativeTo: dir)) }
        guard let policy = provisionablePolicies.first(where: { $0.chip == m.chip.type }) else {
            throw UsageError(Diagnostic("chip \(m.chip.type) cannot be provisioned yet", file: manifestPath,
                                        hint: "provisioning supports " + provisionablePolicies.map(\.chip).joined(separator: ", ")))
        }
        // Final eFuses by the chip's names, checked before any device is touched.
        if let map = EFuseFieldMap.named(m.chip.type) {
            for name in m.efuse.burn + m.efuse.writeProtect
            where map.field(named: name) == nil && FieldMapBurnPlanner.block(named: name, map: map) == nil {
                throw UsageError(Diagnostic("[efuse] names `\(name)`, which is not an eFuse field of the \(policy.displayName)", file: manifestPath,
                                            hint: "use the \(policy.displayName)'s names as `espforge efuse summary --chip \(m.chip.type)` lists them (e.g. DIS_PAD_JTAG)"))
            }
        }

        // [build] dir: the ESP-IDF build fills in what the manifest does not list.
        var buildSDK: SDKConfig?
        var build: IDFBuild?
        if let buildDir = m.buildDir {
            let b = try readBuild(path(buildDir))
            let sdkconfigPath = IDFBuild.join(path(buildDir), b.sdkconfigFile)
            try m.checkConsistency(with: b, manifestFile: manifestPath, sdkconfigFile: sdkconfigPath)
            do { buildSDK = try SimulatorSDKConfig(values: b.sdkconfigValues) } catch {
                throw FileContextError(file: sdkconfigPath, underlying: error)
            }
            m = m.resolvingImages(from: b)
            build = b
        }
        guard let bootRef = m.images.bootloader, let tableRef = m.images.partitionTable, let appRef = m.images.app else {
            throw UsageError("the manifest must list [images.bootloader], [images.partition_table] and [images.app]",
                             hint: "or name an ESP-IDF build with [build] dir = \"build\"")
        }
        let bootPath = path(bootRef.path), appPath = path(appRef.path), tablePath = path(tableRef.path)
        var bootloader = try FileIO.read(bootPath, limit: .flashContents)
        var app = try FileIO.read(appPath, limit: .flashContents)
        let table = try FileIO.read(tablePath, limit: .partitionTable)

        var digest: [UInt8]?
        var keyID: String?
        switch m.signing {
        case .key(let uriText)? where PKCS11URI.isURI(uriText):
            // A key on a PKCS#11 token: both images are signed here, once per run, not per device.
            guard let tokenSigner else {
                throw UsageError(Diagnostic("[signing] key names a PKCS#11 token, which this program cannot open", file: manifestPath,
                                            hint: "provision with the espforge command, or pass a token signer to ProvisionSetup.load"))
            }
            let key: any ImageSigningKey
            do {
                key = try tokenSigner(uriText, m.pkcs11.module.map(path), m.pkcs11.pinFile.map(path))
                try policy.check(key.publicKey.scheme)
            } catch let e as DiagnosticConvertible { throw FileContextError(file: manifestPath, underlying: e) }
            let uri = (try? PKCS11URI.parse(uriText))?.description ?? "pkcs11"
            bootloader = try ImageSigning.withKey(bootloader, file: bootPath, key: key, keyFile: uri, policy: policy)
            app = try ImageSigning.withKey(app, file: appPath, key: key, keyFile: uri, policy: policy)
            digest = try key.publicKey.keyDigest()
            keyID = uri
        case .key(let keyPath)?:
            let pem = try FileIO.readText(path(keyPath), limit: .key)
            let material: KeyMaterial
            do { material = try KeyMaterial.load(pem: pem) } catch { throw FileContextError(file: path(keyPath), underlying: error) }
            guard case let .privateKey(key) = material else {
                throw UsageError(Diagnostic("not a private key", file: path(keyPath),
                                            hint: "give the RSA-3072 signing key (PEM), or use public_key + bootloader_signature + app_signature"))
            }
            bootloader = try ImageSigning.withKey(bootloader, file: bootPath, key: key, keyFile: path(keyPath), policy: policy)
            app = try ImageSigning.withKey(app, file: appPath, key: key, keyFile: path(keyPath), policy: policy)
            digest = try key.publicKey.keyDigest()
        case .external(let pub, let bootSig, let appSig)?:
            let pubPath = path(pub)
            let key: VerifyingKey
            do {
                key = try KeyMaterial.load(pem: try FileIO.readText(pubPath, limit: .key)).verifyingKey
                try policy.check(key.scheme)
            } catch let e as DiagnosticConvertible { throw FileContextError(file: pubPath, underlying: e) }
            bootloader = try ImageSigning.external(bootloader, file: bootPath, signatureFile: path(bootSig), key: key, keyFile: pubPath, policy: policy)
            app = try ImageSigning.external(app, file: appPath, signatureFile: path(appSig), key: key, keyFile: pubPath, policy: policy)
            digest = try key.keyDigest()
        case .presigned?:
            digest = try ImageSigning.presignedDigest(bootloader: bootloader, bootloaderFile: bootPath, app: app, appFile: appPath, policy: policy)
        case nil:
            digest = nil
        }

        let parsed: PartitionTable.Parsed
        do { parsed = try PartitionTable.parse(binary: table) } catch { throw FileContextError(file: tablePath, underlying: error) }
        var images = [ProvisioningJob.Image(name: "bootloader", offset: bootRef.offset, bytes: bootloader),
                      ProvisioningJob.Image(name: "partition_table", offset: tableRef.offset, bytes: table)]
        if let ota = m.images.otadata { images.append(.init(name: "otadata", offset: ota.offset, bytes: try FileIO.read(path(ota.path), limit: .otadata))) }
        images.append(.init(name: "app", offset: appRef.offset, bytes: app))

        var identities: [NVSDevice] = []
        var identityRows: [IdentityRow]?
        var pool = "default"
        if let nvs = m.nvs {
            let configText = try FileIO.readText(path(nvs.config), limit: .nvsCSV)
            let valuesText = try FileIO.readText(path(nvs.values), limit: .nvsCSV)
            let config: [NVSRow]
            do { config = try NVSPerDevice.config(configText) } catch { throw FileContextError(file: path(nvs.config), underlying: error) }
            do {
                let expanded = try NVSPerDevice.devices(config: config, values: valuesText)
                if let first = expanded.failures.first { throw first }
                identities = expanded.devices
            } catch { throw FileContextError(file: path(nvs.values), underlying: error) }
            pool = (nvs.values as NSString).lastPathComponent
            // The pool's rows, read as `registry pool --load` reads them (one loader).
            identityRows = try IdentityPoolFile.rows(valuesCSV: valuesText, file: path(nvs.values))
        }
        let mode: ProvisioningJob.EncryptionMode
        switch m.flashEncryption.mode {
        case .none: mode = .none
        case .onChip: mode = .onChip
        case .host: mode = .host
        }
        var sdk: SDKConfig
        if let buildSDK, let build {
            // The bootloader was built with this sdkconfig (checked against the manifest above).
            sdk = buildSDK
            sdk.secureBootV2 = build.secureBootV2
            sdk.flashEncryption = build.flashEncryption
            sdk.releaseMode = build.flashEncryptionRelease
        } else {
            sdk = SDKConfig()
            sdk.secureBootV2 = m.signing != nil
            sdk.flashEncryption = mode != .none
            sdk.releaseMode = m.flashEncryption.release
            sdk.uartAllowEncrypt = !m.flashEncryption.release
        }
        sdk.partitionTableOffset = tableRef.offset
        var job = ProvisioningJob(
            images: images, partitionTableOffset: tableRef.offset, partitions: parsed.table.entries, mode: mode,
            release: m.flashEncryption.release, manifestHash: Manifest.hash(of: bytes), secureBootDigest: digest,
            identityPool: pool, identities: identities, nvsPartition: m.nvs?.partition ?? "nvs",
            nvsKeysPartition: m.nvs?.keysPartition, encryptNVS: m.nvs?.encrypt ?? false,
            finalBurn: m.efuse.burn, finalWriteProtect: m.efuse.writeProtect,
            minRevision: m.chip.minRevision ?? build?.minRevision,
            flashSize: m.chip.flashSize, station: m.registry.station)
        job.identityRows = identityRows
        job.chip = m.chip.type
        job.secureBootKeyID = keyID
        if let escrowPath = escrowKey ?? m.escrowPublicKey.map(path) {
            do { job.escrow = try EscrowRecipient.load(pem: try FileIO.readText(escrowPath, limit: .key)) } catch let e as KeyCustodyError {
                throw FileContextError(file: escrowPath, underlying: e)
            }
        }
        job.readyLine = m.firstBoot.readyLine
        job.bootTimeout = Double(m.firstBoot.timeout)
        var url = m.registry.url
        if let u = url, !u.hasPrefix("postgres"), !u.hasPrefix("/") {
            url = u.hasPrefix("sqlite:") ? "sqlite:" + path(String(u.dropFirst(7))) : path(u)
        }
        var loaded = Loaded(job: job, sdkconfig: sdk, registryURL: url)
        loaded.stationSlots = m.stationSlots.map { (name: $0.name, port: $0.port) }
        return loaded
    }

    /// The chips `provision` secures, with their Secure Boot V2 rules (key schemes, signature
    /// blocks the ROM honours).
    public static let provisionablePolicies: [SecureBootPolicy] = [.esp32, .esp32s3, .esp32c3]

    /// Reads an ESP-IDF build directory (errors name the file inside it).
    public static func readBuild(_ buildDir: String) throws -> IDFBuild {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: buildDir, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError(Diagnostic("the manifest's [build] dir does not exist", file: buildDir,
                                        hint: "run `idf.py build`, or fix [build] dir (relative to the manifest's folder)"))
        }
        do {
            return try IDFBuild.read { relative in
                try? FileIO.readIfPresent(IDFBuild.join(buildDir, relative), limit: .flashContents)
            }
        } catch {
            var d = error.diagnostic
            d.file = IDFBuild.join(buildDir, error.file)
            throw UsageError(d)
        }
    }

    /// Secure Boot V2 signing of one image for the job, with errors naming the files.
    public enum ImageSigning {
        /// Signs `image` with `key`; an image that is already signed by this key is used as it is.
        public static func withKey(_ image: [UInt8], file: String, key: any ImageSigningKey, keyFile: String,
                                   policy: SecureBootPolicy = .esp32) throws -> [UInt8] {
            if SignedImage.existingSignature(image) != nil {
                do {
                    try SecureBootVerifier.verify(image: image, key: key.publicKey, policy: policy)
                    return image
                } catch {
                    let why = (error as? DiagnosticConvertible)?.diagnostic.message ?? "\(error)"
                    throw UsageError(Diagnostic("already signed, but not validly with \(keyFile): \(why)", file: file,
                                                hint: "give the unsigned image, or use [signing] presigned = true"))
                }
            }
            do { return try SecureBootSigner.sign(image: image, signers: [key], append: false, policy: policy).image } catch {
                throw FileContextError(file: file, underlying: error)
            }
        }

        /// Attaches the signature made elsewhere to `image`; refuses one that does not verify
        /// with the public key over this image.
        public static func external(_ image: [UInt8], file: String, signatureFile: String, key: VerifyingKey,
                             keyFile: String, policy: SecureBootPolicy = .esp32) throws -> [UInt8] {
            if SignedImage.existingSignature(image) != nil {
                throw UsageError(Diagnostic("already carries a signature block; external signatures are made over the unsigned image",
                                            file: file, hint: "list the unsigned image, or use [signing] presigned = true"))
            }
            let signature = try FileIO.read(signatureFile, limit: .key)
            let signed: [UInt8]
            do {
                signed = try SecureBootSigner.signExternal(image: image, signatures: [(key: key, signature: signature)],
                                                           append: false, policy: policy).image
            } catch SecureBootError.externalSignatureInvalid {
                let digest = SecureBootSigner.digestToSign(image: image, hash: key.scheme.contentHash).digest.bytes.hexString
                throw UsageError(Diagnostic("this signature does not verify with \(keyFile) over \(file) (digest \(digest))",
                                            file: signatureFile,
                                            hint: "sign the digest printed by `espforge secure-boot digest-to-sign \(file)` with the key of \(keyFile)"))
            } catch let e as SecureBootError {
                if case .signatureFormat = e { throw FileContextError(file: signatureFile, underlying: e) }
                throw FileContextError(file: file, underlying: e)
            }
            // The finished image, checked as the device will check it.
            do { try SecureBootVerifier.verify(image: signed, key: key, policy: policy) } catch {
                throw FileContextError(file: signatureFile, underlying: error)
            }
            return signed
        }

        /// The key digest of images that carry their own signatures: block 0 of the bootloader
        /// (the one ESP32 honours), which must be valid and also sign the app.
        public static func presignedDigest(bootloader: [UInt8], bootloaderFile: String, app: [UInt8], appFile: String,
                                           policy: SecureBootPolicy = .esp32) throws -> [UInt8] {
            func firstBlock(_ image: [UInt8], _ file: String) throws -> SignatureBlock {
                guard let signed = SignedImage.existingSignature(image), let first = signed.sector.entries.first else {
                    throw UsageError(Diagnostic("[signing] presigned = true, but this image carries no valid signature block",
                                                file: file, hint: "sign it (`espforge secure-boot sign`) or use [signing] key = \"…\""))
                }
                return first.block
            }
            let block = try firstBlock(bootloader, bootloaderFile)
            _ = try firstBlock(app, appFile)
            guard let key = VerifyingKey(fields: block.key) else {
                throw UsageError(Diagnostic("the signature block's public key cannot be read", file: bootloaderFile))
            }
            for (image, file) in [(bootloader, bootloaderFile), (app, appFile)] {
                do { try SecureBootVerifier.verify(image: image, key: key, policy: policy) } catch {
                    let why = (error as? DiagnosticConvertible)?.diagnostic.message ?? "\(error)"
                    throw UsageError(Diagnostic("not validly signed with the bootloader's key (digest \(block.keyDigest.hexString.prefix(16))…): \(why)",
                                                file: file, hint: "bootloader and app must be signed with the same key"))
                }
            }
            return block.keyDigest
        }
    }
}
