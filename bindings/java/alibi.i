/* Java entry file: the common layer, with this folder's local.i (package org.alibi). */
%include "../swig/alibi.i"
