#!/usr/bin/env bash
# Installs what napari needs to draw without a screen (Xvfb + Mesa OpenGL + Qt's xcb libraries), only when missing.
# QT_QPA_PLATFORM=offscreen does not work for napari: it has no OpenGL context.
set -euo pipefail
bash "$(dirname "$0")/apt_install_missing.sh" "headless display packages" \
  xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
  libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 \
  libfontconfig1
