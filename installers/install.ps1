<#
.SYNOPSIS
    Install (or upgrade in place) labrouter for this user on Windows.

.DESCRIPTION
    1. Creates a virtual environment in %LOCALAPPDATA%\labrouter\venv (or $env:LABROUTER_VENV,
       or $env:LABROUTER_HOME\data\venv when LABROUTER_HOME is set).
    2. Installs labrouter into it from a local source tree (-From, default: the checkout this
       script sits in) or from PyPI (-PyPI); re-running upgrades in place.
    3. Puts a `labrouter.cmd` launcher in %LOCALAPPDATA%\labrouter\bin and adds that folder
       to the user's PATH.
    4. Runs `labrouter join CODE` with -Join, else `labrouter init` unless a key exists.
    5. Enables start at login (`labrouter autostart enable`: the HKCU Run key, pythonw).
    6. Adds Windows Firewall rules (group "labrouter") for the cluster announcements
       (UDP 47811) and the relay between daemons (TCP 47812), on private networks only.
       This needs administrator rights: you are asked through UAC, or given the command.
    7. Starts the daemon now, without a console window.
    Nothing is sent anywhere except to PyPI by pip. Undo it with installers\uninstall.ps1.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installers\install.ps1
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installers\install.ps1 -Join lr1-abc...
#>
[CmdletBinding()]
param(
    [string]$From = "",
    [switch]$PyPI,
    [string]$Version = "",
    [string]$Join = "",
    [switch]$Headless,
    [switch]$NoStart,
    [switch]$NoFirewall,
    [string]$Venv = $env:LABROUTER_VENV,
    [int]$ClusterPort = 47811,
    [int]$RelayPort = 47812
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"

function Say([string]$Message) { Write-Host "labrouter install: $Message" }
function Fail([string]$Message) { Write-Error "labrouter install: error: $Message"; exit 1 }

# --- where things go (platformdirs' rules, which labrouter itself uses) ---------------
if ($env:LABROUTER_HOME) {
    $env:LABROUTER_HOME = [IO.Path]::GetFullPath($env:LABROUTER_HOME)
    $DataDir = Join-Path $env:LABROUTER_HOME "data"
} else {
    $DataDir = Join-Path $env:LOCALAPPDATA "labrouter"
}
if (-not $Venv) { $Venv = Join-Path $DataDir "venv" }
$Python = Join-Path $Venv "Scripts\python.exe"
$PythonW = Join-Path $Venv "Scripts\pythonw.exe"
$BinDir = Join-Path $env:LOCALAPPDATA "labrouter\bin"

# Native commands: in Windows PowerShell 5.1 a redirected stderr line of a native program
# becomes an error record, which "Stop" turns into a failure; so every helper that
# silences or captures a native program lowers the preference in its own scope only.

# run labrouter from the venv; returns its standard output, throws on a non-zero exit code
function Invoke-Labrouter {
    $ErrorActionPreference = "Continue"
    $output = & $Python -m labrouter @args
    if ($LASTEXITCODE -ne 0) { throw "labrouter $($args -join ' ') failed (exit code $LASTEXITCODE)" }
    return $output
}
# the exit code of a native program run with all its output discarded
function Get-QuietExitCode([string]$Exe, [string[]]$Arguments) {
    $ErrorActionPreference = "Continue"
    & $Exe @Arguments *> $null
    return $LASTEXITCODE
}
function Test-LabrouterCommand([string]$Name) {
    return ((Get-QuietExitCode $Python @("-m", "labrouter", $Name, "--help")) -eq 0)
}

# --- 1. a Python >= 3.11 and the venv ---------------------------------------------------
function Find-Python {
    $candidates = @()
    if ($env:LABROUTER_PYTHON) { $candidates += ,@($env:LABROUTER_PYTHON) }
    $candidates += ,@("py", "-3.13"); $candidates += ,@("py", "-3.12")
    $candidates += ,@("py", "-3.11"); $candidates += ,@("python")
    foreach ($c in $candidates) {
        $exe = $c[0]; $rest = @($c | Select-Object -Skip 1)
        if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
        $check = @($rest) + @("-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))")
        if ((Get-QuietExitCode $exe $check) -eq 0) { return ,$c }
    }
    return $null
}

$venvWorks = $false
if (Test-Path $Python) {
    $venvWorks = ((Get-QuietExitCode $Python @("-c", "import sys")) -eq 0)
}
if ($venvWorks) {
    Say "upgrading the existing environment $Venv"
} else {
    $py = Find-Python
    if (-not $py) { Fail "no Python 3.11 or newer found (install it from python.org, or set LABROUTER_PYTHON)" }
    Say "creating a virtual environment at $Venv with $($py -join ' ')"
    if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv }
    New-Item -ItemType Directory -Force -Path (Split-Path $Venv) | Out-Null
    $exe = $py[0]; $rest = @($py | Select-Object -Skip 1)
    & $exe @rest -m venv $Venv
    if ($LASTEXITCODE -ne 0) { Fail "python -m venv failed" }
}

# --- 2. labrouter into it ----------------------------------------------------------------
$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
if (-not $From -and -not $PyPI) {
    $candidate = Split-Path -Parent $Here
    $pyproject = Join-Path $candidate "pyproject.toml"
    if ((Test-Path $pyproject) -and (Select-String -Path $pyproject -Pattern '^name = "labrouter"' -Quiet)) {
        $From = $candidate
    } else {
        $PyPI = $true
    }
}
if ($PyPI) {
    $spec = if ($Version) { "labrouter==$Version" } else { "labrouter" }
    Say "installing $spec from PyPI"
    & $Python -m pip install --quiet --disable-pip-version-check --upgrade $spec
    if ($LASTEXITCODE -ne 0) { Fail "pip install $spec failed" }
} else {
    if (-not (Test-Path (Join-Path $From "pyproject.toml"))) { Fail "$From is not a labrouter source tree" }
    Say "installing labrouter from $From"
    & $Python -m pip install --quiet --disable-pip-version-check --upgrade $From
    if ($LASTEXITCODE -ne 0) { Fail "pip install $From failed" }
    # the same version number from a changed checkout must still replace the code
    & $Python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps $From
    if ($LASTEXITCODE -ne 0) { Fail "pip install $From failed" }
}
Say "installed $(Invoke-Labrouter "--version")"

# --- 3. the launcher and the user's PATH -------------------------------------------------
New-Item -ItemType Directory -Force -Path $BinDir | Out-Null
$launcher = Join-Path $BinDir "labrouter.cmd"
$lines = @("@echo off", "rem labrouter launcher written by installers\install.ps1")
if ($env:LABROUTER_HOME) { $lines += "set `"LABROUTER_HOME=$($env:LABROUTER_HOME)`"" }
$lines += "`"$(Join-Path $Venv 'Scripts\labrouter.exe')`" %*"
Set-Content -Path $launcher -Value $lines -Encoding ASCII
$userPath = [Environment]::GetEnvironmentVariable("Path", "User")
$parts = @(); if ($userPath) { $parts = $userPath.Split(";") | Where-Object { $_ } }
if ($parts -notcontains $BinDir) {
    [Environment]::SetEnvironmentVariable("Path", (@($parts) + $BinDir) -join ";", "User")
    Say "added $BinDir to your PATH (new terminals will find ``labrouter``)"
}
Say "wrote the launcher $launcher"

# --- 4. the cluster key ------------------------------------------------------------------
$paths = (Invoke-Labrouter paths "--json") -join "`n" | ConvertFrom-Json
if ($Join) {
    if (Test-LabrouterCommand "join") { Say "joining the cluster"; Invoke-Labrouter join $Join | Write-Host }
    else { Say "warning: this labrouter has no ``join`` command yet; run ``labrouter join CODE`` later" }
} elseif (Test-Path $paths.keyring) {
    Say "keeping the existing cluster key $($paths.keyring)"
} elseif (Test-LabrouterCommand "init") {
    Say "creating a cluster key (labrouter init)"
    Invoke-Labrouter init | Write-Host
} else {
    Say "warning: this labrouter has no ``init`` command yet; run ``labrouter init`` later"
}

# --- 5. start at login -------------------------------------------------------------------
Say "enabling start at login"
$autostartArgs = @("autostart", "enable"); if ($Headless) { $autostartArgs += "--headless" }
Invoke-Labrouter @autostartArgs | ForEach-Object { Write-Host "    $_" }

# --- 6. the firewall ---------------------------------------------------------------------
function Test-Admin {
    $id = [Security.Principal.WindowsIdentity]::GetCurrent()
    return (New-Object Security.Principal.WindowsPrincipal $id).IsInRole(
        [Security.Principal.WindowsBuiltInRole]::Administrator)
}
# Private profile only: the lab is the home network, never a café's Wi-Fi.
$firewall = @"
Remove-NetFirewallRule -Group 'labrouter' -ErrorAction SilentlyContinue;
New-NetFirewallRule -Group 'labrouter' -DisplayName 'labrouter cluster announcements (UDP $ClusterPort)' -Direction Inbound -Protocol UDP -LocalPort $ClusterPort -Action Allow -Profile Private | Out-Null;
New-NetFirewallRule -Group 'labrouter' -DisplayName 'labrouter relay (TCP $RelayPort)' -Direction Inbound -Protocol TCP -LocalPort $RelayPort -Action Allow -Profile Private | Out-Null
"@
if ($NoFirewall) {
    Say "not touching the firewall (-NoFirewall)"
} elseif (Test-Admin) {
    Invoke-Expression $firewall
    Say "added firewall rules (group labrouter): UDP $ClusterPort and TCP $RelayPort, private networks"
} else {
    Say "adding firewall rules needs administrator rights: asking through UAC"
    try {
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($firewall))
        $p = Start-Process powershell -Verb RunAs -Wait -PassThru -WindowStyle Hidden `
            -ArgumentList "-NoProfile", "-EncodedCommand", $encoded
        if ($p.ExitCode -ne 0) { throw "exit code $($p.ExitCode)" }
        Say "added firewall rules (group labrouter): UDP $ClusterPort and TCP $RelayPort, private networks"
    } catch {
        Say "warning: the firewall rules were not added ($_). In an administrator PowerShell run:"
        $firewall.Split("`n") | ForEach-Object { Write-Host "    $($_.Trim())" }
    }
}

# --- 7. start it now ---------------------------------------------------------------------
$pidFile = Join-Path $paths.run "installer-daemon.pid"
if ($NoStart) {
    Say "not starting the daemon (-NoStart)"
} elseif (-not (Test-LabrouterCommand "run")) {
    Say "warning: this labrouter has no ``run`` command yet: not started"
} else {
    if (Test-Path $pidFile) {
        $old = Get-Process -Id ([int](Get-Content $pidFile)) -ErrorAction SilentlyContinue
        # after a reboot the number may belong to another program: only a Python is ours
        if ($old -and $old.ProcessName -notmatch '^pythonw?$') { $old = $null }
        if ($old) { Say "stopping the daemon this installer started before (pid $($old.Id))"; $old | Stop-Process -Force }
    }
    New-Item -ItemType Directory -Force -Path $paths.run | Out-Null
    $runArgs = @("-m", "labrouter", "run"); if ($Headless) { $runArgs += "--headless" }
    $exe = if (Test-Path $PythonW) { $PythonW } else { $Python }  # pythonw: no console window
    $proc = Start-Process -FilePath $exe -ArgumentList $runArgs -PassThru -WindowStyle Hidden
    Set-Content -Path $pidFile -Value $proc.Id -Encoding ASCII
    Say "started the daemon (pid $($proc.Id))"
    if (Test-LabrouterCommand "status") {
        $answered = $false
        for ($i = 0; $i -lt 40 -and -not $answered; $i++) {
            try { $status = Invoke-Labrouter status; Say "the daemon answers: $status"; $answered = $true }
            catch { Start-Sleep -Milliseconds 250 }
        }
        if (-not $answered) { Say "warning: the daemon does not answer yet; see $($paths.log)" }
    }
}

Say "done. labrouter is in $Venv; run ``labrouter --help`` in a new terminal; undo with installers\uninstall.ps1"
