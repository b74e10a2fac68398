/* Go entry file: the common layer, with this folder's local.i (the internal package capi). */
%include "../swig/alibi.i"
